"""What is recorded: the typed parts, the results record they make, the machine's fingerprint, and writing them
on a disk that can fill up."""

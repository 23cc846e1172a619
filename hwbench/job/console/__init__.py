"""What a job shows on the terminal: the progress bar, the log lines around it, and the quiet it keeps."""

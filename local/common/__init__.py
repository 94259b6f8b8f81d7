"""What the local host, the local ML platform and the CLI all use: child processes and their pid files, the
twin's state files, the HTTP servers' limits, the webhook key."""

"""What the local host, the local ML platform and the CLI all use: child processes, the webhook key."""

"""The toy apps here are imported by the functions host subprocess, never by pytest."""

collect_ignore_glob = ["*"]

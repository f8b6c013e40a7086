"""Browser tests: the pages in headless Chromium against the real server and Python peers."""

"""CI/CD: thin async clients for Jenkins, GitHub Actions and GitLab, and what drives a build.

No Textual here (the data layer); the runner uses these, the TUI never does (it holds no
provider token).
"""

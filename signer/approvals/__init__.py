"""M-of-N approvals: a pure core of rules (``rules``) that the service persists and executes."""

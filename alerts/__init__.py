"""Alert rules, lifecycle and chat delivery (built in a later issue; nothing here yet)."""

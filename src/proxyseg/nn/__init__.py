"""Neural building blocks shared by the teacher and the proxies (the TCN)."""

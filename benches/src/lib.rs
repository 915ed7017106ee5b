//! Placeholder; see the performance issue.

"""Bad-input battery: every public surface, each case our error type, the field and the fix."""

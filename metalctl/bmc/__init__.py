"""BMC access. The only package that imports sushy or pyghmi (their errors stop here)."""

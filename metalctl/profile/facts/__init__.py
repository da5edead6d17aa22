"""Hardware topology facts: in-band (local or over SSH), Redfish, Ironic inspection."""

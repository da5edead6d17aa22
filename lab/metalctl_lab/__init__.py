"""The emulated rack: real peers on 127.0.0.0/8 (see ``docs/lab.md``)."""

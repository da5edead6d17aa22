# The installer's log: /tmp/anaconda.log (the kickstart templates' %onerror tails it) and
# the console, each line stamped with seconds since boot. STANDIN_CHECK (the parse-only
# mode, run on a build host) logs to stderr instead of the console.
ANALOG=${ANALOG:-/tmp/anaconda.log}
log() {
  line="[$(cut -d' ' -f1 /proc/uptime)] installer: $*"
  echo "$line" >> "$ANALOG"
  if [ -n "$STANDIN_CHECK" ]; then echo "$line" >&2; else echo "$line" > /dev/console; fi
}

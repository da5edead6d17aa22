# The installer's log: /tmp/anaconda.log (the kickstart templates' %onerror tails it) and
# the console, each line stamped with seconds since boot. STANDIN_CHECK (the parse-only
# mode, run on a build host) logs to stderr instead of the console.
ANALOG=${ANALOG:-/tmp/anaconda.log}
log() {
  _logline="[$(cut -d" " -f1 /proc/uptime)] installer: $*"
  echo "$_logline" >> "$ANALOG"
  if [ -n "$STANDIN_CHECK" ]; then echo "$_logline" >&2; else echo "$_logline" > /dev/console; fi
}

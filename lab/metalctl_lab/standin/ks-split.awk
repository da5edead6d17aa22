# Split a kickstart into what the stand-in installer acts on, in the directory `dir`:
#   commands        "LINE<TAB>command line" for every command (comments/blank dropped)
#   scripts         "N<TAB>LINE<TAB>%header" per %pre/%post/%onerror, body in script.N
#   packages        the %packages body (logged, never installed)
#   errors          "LINE<TAB>reason" for what the installer refuses
# Sections end at %end, as anaconda requires.
function refuse(why) { printf "%d\t%s\n", NR, why > (dir "/errors") }
BEGIN { sect = ""; n = 0; printf "" > (dir "/commands"); printf "" > (dir "/scripts") }
{ sub(/\r$/, "") }
sect != "" && $0 ~ /^[ \t]*%end[ \t]*$/ { sect = ""; next }
sect == "script" { print > (dir "/script." n); next }
sect == "packages" { print > (dir "/packages"); next }
sect == "skip" { next }
{
  line = $0
  sub(/^[ \t]+/, "", line); sub(/[ \t]+$/, "", line)
  if (line == "" || line ~ /^#/) next
  if (line !~ /^%/) { printf "%d\t%s\n", NR, line > (dir "/commands"); next }
  split(line, w, /[ \t]+/)
  if (w[1] == "%pre" || w[1] == "%post" || w[1] == "%onerror") {
    n++; sect = "script"; printf "" > (dir "/script." n)
    printf "%d\t%d\t%s\n", n, NR, line > (dir "/scripts")
  } else if (w[1] == "%packages") {
    sect = "packages"; printf "" > (dir "/packages")
  } else if (w[1] == "%end") {
    refuse("%end without a section")
  } else {
    refuse("section " w[1] " is not supported by the stand-in installer"); sect = "skip"
  }
}
END { if (sect != "") refuse("the last section has no %end") }

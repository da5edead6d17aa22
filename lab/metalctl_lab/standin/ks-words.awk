# Split one kickstart command line (ENVIRON["KSLINE"]) into words, one per output line,
# the way pykickstart's shlex does for the commands the stand-in reads: "double" and
# 'single' quotes group, a backslash escapes the next character outside single quotes;
# nothing is expanded ($6$... crypt hashes stay intact).
BEGIN {
  s = ENVIRON["KSLINE"]; word = ""; have = 0; q = ""
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (q == "'") { if (c == "'") q = ""; else word = word c; continue }
    if (c == "\\" && i < length(s)) { i++; word = word substr(s, i, 1); have = 1; continue }
    if (q == "\"") { if (c == "\"") q = ""; else word = word c; continue }
    if (c == "\"" || c == "'") { q = c; have = 1; continue }
    if (c == " " || c == "\t") { if (have) print word; word = ""; have = 0; continue }
    word = word c; have = 1
  }
  if (q != "") { print "unbalanced quote" > "/dev/stderr"; exit 2 }
  if (have) print word
}

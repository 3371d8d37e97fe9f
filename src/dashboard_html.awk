# Turns src/dashboard.html into C: const char dashboard_html[] and its
# length (src/dashboard.h). Run with LC_ALL=C so that length() and
# substr() count bytes. Escapes what a C string literal cannot hold as is:
# backslash, double quote, tab, and '?' (no trigraphs, whatever -std says).
BEGIN {
    print "/* Generated from src/dashboard.html by src/dashboard_html.awk: do not edit. */"
    print "#include \"dashboard.h\""
    print ""
    print "const char dashboard_html[] ="
}
{
    out = ""
    n = length($0)
    for (i = 1; i <= n; i++) {
        c = substr($0, i, 1)
        if (c == "\\" || c == "\"")
            out = out "\\" c
        else if (c == "?")
            out = out "\\?"
        else if (c == "\t")
            out = out "\\t"
        else if (c != "\r")
            out = out c
    }
    printf "    \"%s\\n\"\n", out
}
END {
    print "    \"\";"
    print "const size_t dashboard_html_len = sizeof(dashboard_html) - 1;"
}

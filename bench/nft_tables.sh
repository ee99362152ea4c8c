# bench/nft_tables.sh (sourced by run.sh and lib.sh): with the nf_tables
# backend, iptables creates a table (ip nat, ip filter, ...) when a rule first
# needs it and leaves it behind, empty, when the rule is deleted.  Note the
# tables at start; at exit drop those that are new and hold no rule.  Needs
# log() from the sourcing script; does nothing without the nft command.

NFT_TABLES_BEFORE=

nft_tables_note() {
    command -v nft >/dev/null 2>&1 || return 0
    NFT_TABLES_BEFORE=$(nft list tables 2>/dev/null)
}

nft_tables_drop_new_empty() {
    command -v nft >/dev/null 2>&1 || return 0
    local fam name
    while read -r _ fam name; do
        [ -n "$name" ] || continue
        grep -qxF "table $fam $name" <<<"$NFT_TABLES_BEFORE" && continue
        # Only table and chain heads, hooks and braces: nobody's rule is in it.
        nft list table "$fam" "$name" 2>/dev/null |
            grep -qvE '^[[:space:]]*(table [^ ]+ [^ ]+ \{|chain [^ ]+ \{|type .*;|\})?$' && continue
        nft delete table "$fam" "$name" 2>/dev/null ||
            log "warning: could not delete the empty table $fam $name"
    done < <(nft list tables 2>/dev/null)
}

#!/bin/bash
# Mutual TLS between hosts (network namespaces, an agent each): a grid CA
# made with `gridvm ca`, certificates for h1 (TLS only, no grid key) and
# h2 (TLS and the grid key: a host in the middle of the switch), h3 with
# only the grid key. An image fetch and a live migration go over TLS (the
# server answers TLS 1.3 and only with a client certificate; both QEMUs
# carry the TLS parameters, the destination's authz names the source);
# a host without a certificate, with one from another CA, or a revoked
# one is refused with a clear error; only a controller's certificate may
# bind jobs to an agent, an agent reports only as the host it is; a migration to a host without TLS is
# refused and the VM keeps running; the shared-key host still talks to the
# host in transition.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/hosts.sh"
hosts_up 4
CA=$HOSTS_DIR/ca
hosts_gv 1 ca init --dir "$CA" >/dev/null || fail "ca init"
expect_eq "the CA key is private" "$(stat -c %a "$CA/ca.key")" 600
for i in 1 2; do
	mkdir -p "${HOST_DATA[i]}"
	hosts_gv "$i" ca issue "h$i" --role agent --addr "${HOST_IP[i]}" --ca "$CA" >/dev/null ||
		fail "ca issue h$i"
done
expect_eq "h1's key is private" "$(stat -c %a "${HOST_DATA[1]}/tls/host.key")" 600
openssl x509 -in "${HOST_DATA[1]}/tls/host.crt" -noout -subject -ext subjectAltName |
	tr -d '\n' | grep -q "OU = agent, CN = h1.*DNS:h1, IP Address:${HOST_IP[1]}" ||
	fail "h1's certificate does not name it: $(openssl x509 -in "${HOST_DATA[1]}/tls/host.crt" -noout -subject -ext subjectAltName)"
# h4: a certificate from another CA (it trusts ours: its certificate is public)
hosts_gv 4 ca init --dir "$HOSTS_DIR/rogue-ca" --name "rogue CA" >/dev/null
mkdir -p "${HOST_DATA[4]}"
hosts_gv 4 ca issue h4 --role agent --addr "${HOST_IP[4]}" --ca "$HOSTS_DIR/rogue-ca" >/dev/null
cp "$CA/ca.crt" "$CA/crl.pem" "${HOST_DATA[4]}/tls/"
echo "ok: CA made, certificates issued: $(hosts_gv 1 ca status)"

HOSTS_KEY_OVERRIDE=$HOSTS_DIR/no-grid.key hosts_agent_start 1   # TLS only
hosts_agent_start 2                                             # TLS and the key
hosts_agent_start 3                                             # the key only
HOSTS_KEY_OVERRIDE=$HOSTS_DIR/no-grid.key hosts_agent_start 4   # the rogue
expect_eq "h3 uses the shared key" "$(hosts_gv 3 ca status | cut -d, -f1)" "tls: off"

# the server: TLS 1.3, and only with a client certificate of the grid
S="openssl s_client -connect ${HOST_IP[1]}:7878 -alpn gridvm-xfer/2 -CAfile $CA/ca.crt -verify_return_error"
out=$(hosts_exec 2 $S -cert "${HOST_DATA[2]}/tls/host.crt" -key "${HOST_DATA[2]}/tls/host.key" \
	</dev/null 2>&1)
grep -q "^New, TLSv1.3" <<<"$out" || fail "h1 does not answer TLS 1.3: $out"
grep -q "Verify return code: 0 (ok)" <<<"$out" || fail "h1's certificate does not verify: $out"
echo "ok: h1 answers TLS 1.3 with a certificate of the grid ($(grep -o 'Cipher is .*' <<<"$out" | head -1))"
out=$(hosts_exec 2 $S -ign_eof </dev/null 2>&1) || true   # read until the server closes
grep -q "alert certificate required" <<<"$out" || fail "h1 took a client without a certificate: $out"
echo "ok: a TLS client without a certificate: $(grep -o 'alert certificate required' <<<"$out" | head -1)"

# an image over TLS, and the shared-key host's fetch refused by h1
W=$HOSTS_DIR/work
mkdir -p "$W"
head -c 8M /dev/urandom >"$W/src.img"
want=$(sha256sum <"$W/src.img" | cut -d' ' -f1)
hosts_gv 1 image import src "$W/src.img" >/dev/null
hosts_gv 2 image fetch src --from "${HOST_IP[1]}" --json >"$W/f.json" || fail "fetch over TLS"
expect_eq "the image fetched over TLS" "$(sha256sum <"${HOST_DATA[2]}/images/src.img" | cut -d' ' -f1)" "$want"
echo "ok: h2 fetched src from h1 over TLS"
hosts_gv 3 image fetch src --from "${HOST_IP[1]}" 2>"$W/e" && fail "h3 without a certificate fetched from h1"
grep -q "takes only mutual TLS" "$W/e" || fail "unclear: $(cat "$W/e")"
echo "ok: no certificate: $(head -1 "$W/e")"
hosts_gv 4 image fetch src --from "${HOST_IP[1]}" 2>"$W/e" && fail "h4 with another CA's certificate fetched"
grep -q "refused this host's certificate (tlsv1 alert unknown ca)" "$W/e" || fail "unclear: $(cat "$W/e")"
echo "ok: another CA's certificate: $(head -1 "$W/e")"
hosts_gv 1 image fetch other --from "${HOST_IP[4]}" 2>"$W/e" && fail "h1 trusted h4's certificate"
grep -q "not trusted" "$W/e" || fail "unclear: $(cat "$W/e")"
echo "ok: h1 does not trust h4 either: $(head -1 "$W/e")"
# the switch host by host: h2 (certificates and the key) and h3 (the key)
hosts_gv 3 image fetch src --from "${HOST_IP[2]}" >/dev/null || fail "h3 cannot fetch from h2 with the key"
hosts_gv 2 image delete src >/dev/null || fail "cannot delete src on h2"
hosts_gv 2 image fetch src --from "${HOST_IP[3]}" >/dev/null || fail "h2 cannot fetch from h3 with the key"
echo "ok: h3 with the shared key and h2 in transition fetch from each other"

# live migration h1 -> h2 over TLS
JOB='i=0; while :; do i=$((i+1)); echo $i; sleep 0.3; done'
source "$(dirname "$0")/hostvm.sh"
hosts_gv 1 vm create c --memory 256M --job "$JOB" >/dev/null
hosts_gv 1 vm start c >/dev/null
reaches_on 1 c 3 || fail "the job does not count"
hosts_gv 1 migrate c --to "${HOST_IP[2]}" --json >"$W/live.json" || fail "live migration over TLS"
only_on 2 c
at=$(last_on 2 c)
reaches_on 2 c $((at + 3)) || fail "no progress after the migration"
# the destination's QEMU took the stream with TLS, from h1's certificate only
qmp() { # HOST VM CMD [ARGS-JSON]
	python3 - "${HOST_DATA[$1]}/vms/$2/qmp.sock" "$3" "${4:-{\}}" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
json.loads(f.readline())
for cmd, args in (("qmp_capabilities", {}), (sys.argv[2], json.loads(sys.argv[3]))):
    f.write(json.dumps({"execute": cmd, "arguments": args}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "event" not in r: break
print(json.dumps(r.get("return", r)))
PY
}
par=$(qmp 2 c query-migrate-parameters)
expect_eq "tls-creds on the destination" "$(jq -r '."tls-creds"' <<<"$par")" gv-mig-tls
expect_eq "tls-authz on the destination" "$(jq -r '."tls-authz"' <<<"$par")" gv-mig-authz
expect_eq "the authz names h1" \
	"$(qmp 2 c qom-get '{"path": "/objects/gv-mig-authz", "property": "identity"}' | jq -r .)" \
	'O=gridvm,OU=agent,CN=h1'
expect_eq "verify-peer" \
	"$(qmp 2 c qom-get '{"path": "/objects/gv-mig-tls", "property": "verify-peer"}')" true
echo "ok: live migration h1 -> h2 over TLS, counted 1..$(check_log 2 c) ($(jq -c '{"tls-creds", "tls-authz", "multifd-compression"}' <<<"$par"))"

# h2 -> h3 (no certificate): refused before any memory leaves, c runs on h2
hosts_gv 2 migrate c --to "${HOST_IP[3]}" 2>"$W/e" && fail "migrated to a host without TLS"
grep -q "only over TLS" "$W/e" || fail "unclear: $(cat "$W/e")"
echo "ok: to a host without TLS: $(head -1 "$W/e")"
expect_eq "c still runs on h2" "$(state_on 2 c)" running
expect_eq "and not on h3" "$(state_on 3 c)" absent
at=$(last_on 2 c)
reaches_on 2 c $((at + 2)) || fail "c stopped on h2 after the refused migration"

# the grid: a controller with a controller's certificate; over TLS only it
# may bind jobs to an agent, and an agent reports only as the host its
# certificate names
source "$(dirname "$0")/grid.sh"
mkdir -p "$HOSTS_DIR/ctl"
hosts_gv 1 ca issue ctl --role controller --addr "${HOST_IP[1]}" --ca "$CA" \
	--out "$HOSTS_DIR/ctl/tls" >/dev/null
grid_ctl_start
hosts_agent_stop 2
m2=$(log_mark "${HOST_DATA[2]}/gridvmd.log")
grid_join 2
h2_up() { G hosts | grep -E "^h2 " | grep -q up; }
wait_until 60 "h2 up in the grid" h2_up
log_has "${HOST_DATA[2]}/gridvmd.log" "$m2" "mutual TLS as h2 (agent)" || fail "h2 not on TLS"
echo "ok: h2 joined the controller over TLS: $(G hosts | grep -E '^h2 ')"
hosts_agent_stop 2
m2=$(log_mark "${HOST_DATA[2]}/gridvmd.log")
hosts_agent_start 2 --controller "$GRID_CTL" --name h9
wait_until 60 "the controller refusing h2's report as h9" log_has "${HOST_DATA[2]}/gridvmd.log" "$m2" \
	"a report for host h9 from the certificate of h2 (agent) is refused"
G hosts | grep -qE "^h9 " && fail "the controller took a report for h9 from h2's certificate"
echo "ok: an agent reporting as another host: $(grep -o 'a report for host h9.*' "${HOST_DATA[2]}/gridvmd.log" | head -1)"
# a "controller" holding an agent's certificate (h1's)
FAKE=$HOSTS_DIR/fake-ctl
mkdir -p "$FAKE"
cp -r "${HOST_DATA[1]}/tls" "$FAKE/tls"
ip netns exec "${HOST_NS[1]}" env GRIDVM_DATA="$FAKE" "$GVC" --listen "${HOST_IP[1]}:7901" \
	--grid-key "$HOSTS_DIR/grid.key" --data-dir "$FAKE" --daemon --report-interval 1s \
	>>"$FAKE/gridvmctld.log" 2>&1 || fail "the fake controller did not start"
hosts_agent_stop 2
m2=$(log_mark "${HOST_DATA[2]}/gridvmd.log")
hosts_agent_start 2 --controller "${HOST_IP[1]}:7901" --name h2
wait_until 60 "h2 refusing a controller with an agent's certificate" log_has \
	"${HOST_DATA[2]}/gridvmd.log" "$m2" "is not a controller's; its bindings are refused"
echo "ok: $(grep -o 'the controller [^ ]*: its certificate.*' "${HOST_DATA[2]}/gridvmd.log" | tail -1)"
hosts_agent_stop 2
hosts_agent_start 2

# revocation: h2's certificate revoked, the CRL given to h1 (read at the
# next connection, no restart): h2 is refused, both ways
hosts_gv 1 ca revoke h2 --ca "$CA" >/dev/null || fail "ca revoke"
cp "$CA/crl.pem" "${HOST_DATA[1]}/tls/crl.pem"
hosts_gv 2 image fetch other --from "${HOST_IP[1]}" 2>"$W/e" && fail "a revoked host fetched"
grep -q "revoked" "$W/e" || fail "unclear: $(cat "$W/e")"
echo "ok: revoked: $(head -1 "$W/e")"
hosts_gv 1 image fetch other --from "${HOST_IP[2]}" 2>"$W/e" && fail "h1 trusted a revoked host"
grep -q "certificate revoked" "$W/e" || fail "unclear: $(cat "$W/e")"
echo "ok: h1 refuses the revoked h2 too: $(head -1 "$W/e")"
hosts_gv 2 vm stop c >/dev/null 2>&1 || true
echo "PASS"

#!/bin/sh
# Render the pod's address into kamailio.cfg, then start Kamailio once the Asterisk pods
# named in the dispatcher list resolve.
# Kamailio resolves dispatcher targets when it loads the list and refuses to start on a name
# that does not resolve yet (a StatefulSet pod still being created), so wait for them, at most
# RINGWISE_EDGE_DNS_WAIT_S seconds, then let Kamailio report whatever is still missing.
set -eu
cfg="${RINGWISE_EDGE_CONFIG:-/etc/ringwise-sip-edge/kamailio.cfg}"
list="${RINGWISE_EDGE_DISPATCHER_LIST:-/etc/ringwise-sip-edge/dispatcher.list}"
wait_s="${RINGWISE_EDGE_DNS_WAIT_S:-120}"
run_dir="${RINGWISE_EDGE_RUN_DIR:-/tmp/kamailio}"

hosts=$(sed -n 's/^[0-9][0-9]* sip:\([^:;>]*\).*/\1/p' "$list")
deadline=$(( $(date +%s) + wait_s ))
for host in $hosts; do
  until getent hosts "$host" >/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "ringwise-sip-edge: $host does not resolve after ${wait_s}s; starting anyway" >&2
      break
    fi
    sleep 2
  done
done
# The config names this pod's own address (@POD_IP@) in its listen lines and Record-Route.
pod_ip="${RINGWISE_EDGE_POD_IP:?RINGWISE_EDGE_POD_IP must be the pod address (downward API)}"
case "$pod_ip" in
  *[!0-9a-fA-F:.]*) echo "ringwise-sip-edge: bad RINGWISE_EDGE_POD_IP $pod_ip" >&2; exit 2 ;;
esac
mkdir -p "$run_dir"
sed "s/@POD_IP@/$pod_ip/g" "$cfg" >"$run_dir/kamailio.cfg"
# -DD: foreground, no fork of the main process; -E: log to stderr (the container log).
exec kamailio -DD -E -f "$run_dir/kamailio.cfg" -Y "$run_dir" "$@"

#!/usr/bin/env bash
# Installs what the local stack (router/stack.py) runs on a Debian 12 machine:
# Java + Maven for Kafka, Redis, Dovecot IMAP/LMTP, and the Kafka broker jars.
# Idempotent: a second run changes nothing and touches no network.
# The Kafka jars: a complete set already in $SB_KAFKA_LIBS, $SB_STATE_DIR/kafka/libs or
# <repo>/.local/kafka/libs is used as it is (the stack looks in the same places), so a
# stack with a private SB_STATE_DIR shares them; else they are fetched into $SB_KAFKA_LIBS,
# default <repo>/.local/kafka/libs (git-ignored).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
libs=${SB_KAFKA_LIBS:-$repo/.local/kafka/libs}
places=("$libs")
if [[ -z ${SB_KAFKA_LIBS:-} && -n ${SB_STATE_DIR:-} ]]; then
    places=("$SB_STATE_DIR/kafka/libs" "$libs")
fi
pom=$here/pom.xml
# faketime: `make test-clocks` runs the suite under a faked night and weekend
# prometheus: its promtool checks and unit-tests the alert rules (deploy/prometheus)
# openssl: the security tests make their own CA and certificates for Kafka and Redis TLS
# valgrind: `python -m bench.brain --instructions` counts instructions, which host noise does not move
# gcc, libc6-dev (and Python's headers if this Python has none): `make setup` compiles the
# brain's decision path with mypyc (docs/decisions/0023)
packages=(openjdk-17-jre-headless maven redis-server dovecot-imapd dovecot-lmtpd faketime prometheus openssl chromium valgrind
          gcc libc6-dev)
python=$repo/.venv/bin/python
[[ -x $python ]] || python=python3
if [[ ! -f $("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h ]]; then
    packages+=(python3-dev)
fi
cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
}

missing=()
for pkg in "${packages[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]})); then
    if ((EUID != 0)); then
        echo "install.sh: missing ${missing[*]}; run this script as root" >&2
        exit 1
    fi
    # The stack runs its own Redis and Dovecot on its own ports: keep the
    # packages' system services from starting now (policy-rc.d is Debian's hook).
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        cleanup+=("$policy")
    fi
    echo "install.sh: installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The jars depend on the whole pom (Kafka version and logging binding), so the
# marker records both; any change to the pom fetches them again.
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
want="kafka=$kafka_version pom=$(sha256sum "$pom" | cut -d' ' -f1)"
for place in "${places[@]}"; do
    if [[ -f $place/.installed && $(<"$place/.installed") == "$want" ]]; then
        echo "install.sh: Kafka $kafka_version jars present in $place"
        exit 0
    fi
done

echo "install.sh: fetching Kafka $kafka_version jars into $libs"
mkdir -p "$(dirname "$libs")"
tmp=$(mktemp -d "$libs.XXXXXX")
cleanup+=("$tmp")
# Debian's Maven 3.8 prints stray colour resets even in batch mode; errors still show
mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 | sed 's/\x1b\[[0-9;]*m//g'
if ! compgen -G "$tmp/kafka_2.13-$kafka_version.jar" >/dev/null; then
    echo "install.sh: maven gave no kafka_2.13-$kafka_version.jar in $tmp" >&2
    exit 1
fi
echo "$want" >"$tmp/.installed"
chmod 755 "$tmp"
# Swap in the complete set only, so a failed fetch never leaves half a classpath.
rm -rf "$libs"
mv "$tmp" "$libs"
echo "install.sh: $(find "$libs" -name '*.jar' | wc -l) jars in $libs"

#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for testing the SLURM profile:
#   workflow/profiles/slurm/local-cluster.sh start DIR [--accounting]  # prints `export SLURM_CONF=...`
#   workflow/profiles/slurm/local-cluster.sh stop DIR    # stops the daemons it started, by PID
# Needs root and Debian's slurm-wlm and munge (`apt-get install slurm-wlm munge`). No systemd,
# no cgroups (proctrack/linuxproc, task/none). Without --accounting, no accounting database:
# Snakemake's SLURM executor then queries job states with squeue. With it (also `apt-get install
# slurmdbd mariadb-server`), a MariaDB server and slurmdbd in DIR hold the accounts, as on most
# clusters: account "gapbench" for root (its default) beside SLURM's own "root"; jobs under any
# other account are refused (AccountingStorageEnforce=associations); sacct and sacctmgr work.
# Everything it writes stays in DIR, except /etc/slurm/slurm.conf: the SLURM job-step executor
# drops SLURM_CONF from the environment of the steps it starts, so srun inside a job reads the
# default path. The script writes that file only where none exists (it refuses to run beside a
# real cluster's) and removes it on stop. A start that fails stops what it had started.
set -euo pipefail

usage="usage: local-cluster.sh start DIR [--accounting] | stop DIR"
action=${1:?$usage}
state=$(realpath -m "${2:?$usage}")
accounting=false
case ${3:-} in
    "") ;;
    --accounting) accounting=true ;;
    *) echo "unknown option ${3}; $usage" >&2; exit 2 ;;
esac
ACCOUNT=gapbench  # the account --accounting makes for root, its default

MARKER="# written by gapbench local-cluster.sh for $state"
SYSTEM_CONF=/etc/slurm/slurm.conf

DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)  # in the order they are stopped

running() {  # NAME: whether DIR's pid file for NAME names that daemon, alive (a stale file could name another)
    [[ -f "$state/$1.pid" && $(cat "/proc/$(cat "$state/$1.pid")/comm" 2>/dev/null) == "$1" ]]
}

stop() {
    if [[ -f $SYSTEM_CONF ]] && grep -qxF "$MARKER" "$SYSTEM_CONF"; then
        rm -f "$SYSTEM_CONF"
    fi
    for name in "${DAEMONS[@]}"; do
        if running "$name"; then
            pid=$(cat "$state/$name.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done  # MariaDB takes seconds
        fi
        rm -f "$state/$name.pid"
    done
}

if [[ $action == stop ]]; then
    stop
    exit 0
fi
[[ $action == start ]] || { echo "unknown action $action; allowed: start, stop" >&2; exit 2; }
for tool in slurmctld slurmd munged sbatch squeue; do
    command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install slurm-wlm munge" >&2; exit 1; }
done
if $accounting; then
    for tool in slurmdbd sacctmgr mariadbd mariadb mariadb-install-db; do
        command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install slurmdbd mariadb-server" >&2; exit 1; }
    done
fi

if [[ -f $SYSTEM_CONF ]] && ! grep -qxF "$MARKER" "$SYSTEM_CONF"; then
    echo "$SYSTEM_CONF exists and is not this script's: not starting a test cluster beside it" >&2
    exit 1
fi
for name in "${DAEMONS[@]}"; do  # the failure trap below would stop them
    if running "$name"; then
        echo "a cluster is already running in $state ($name); stop it first: local-cluster.sh stop $state" >&2
        exit 1
    fi
done
mkdir -p "$state"/{spool,ctld,log,munge}
trap 'echo "local-cluster.sh: the cluster did not start; logs in $state/log" >&2; stop' ERR

wait_until() {  # DESCRIPTION COMMAND...: until COMMAND succeeds, for up to 30 s
    local what=$1
    shift
    for _ in $(seq 150); do "$@" > /dev/null 2>&1 && return 0; sleep 0.2; done
    echo "$what did not come up within 30 s" >&2
    return 1
}
chmod 700 "$state/munge"
host=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))  # MB, less 1 GiB for the system

# munge: its own key and socket in DIR, so nothing of the system's is touched
[[ -f "$state/munge/munge.key" ]] || dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$state/munge/munge.key"
munged --force --key-file "$state/munge/munge.key" --socket "$state/munge/munge.socket" \
    --pid-file "$state/munged.pid" --log-file "$state/log/munged.log" --seed-file "$state/munge/munge.seed"

if $accounting; then
    # MariaDB in DIR, on its own port, reached by slurmdbd over TCP as user slurm
    [[ -d "$state/db" ]] || mariadb-install-db --no-defaults --user=root --datadir="$state/db" \
        --auth-root-authentication-method=socket --skip-test-db > "$state/log/mariadb-install.log"
    mariadbd --no-defaults --user=root --datadir="$state/db" --socket="$state/mariadb.sock" \
        --pid-file="$state/mariadbd.pid" --port=16820 --bind-address=127.0.0.1 --skip-name-resolve \
        --innodb-buffer-pool-size=64M --log-error="$state/log/mariadb.log" > /dev/null 2>&1 &
    echo $! > "$state/mariadbd.pid"  # before it writes its own (the same PID), so a failed start stops it
    wait_until MariaDB test -S "$state/mariadb.sock"
    mariadb --no-defaults --socket="$state/mariadb.sock" -u root -e "CREATE USER IF NOT EXISTS
        'slurm'@'127.0.0.1' IDENTIFIED BY 'gapbench-local'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'"
    # slurmdbd reads slurmdbd.conf from SLURM_CONF's folder; it must be private to SlurmUser
    (umask 077; cat > "$state/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$state/munge/munge.socket
DbdHost=localhost
DbdPort=16819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=16820
StorageUser=slurm
StoragePass=gapbench-local
StorageLoc=slurm_acct_db
PidFile=$state/slurmdbd.pid
LogFile=$state/log/slurmdbd.log
EOF
    )
    # AccountingStoragePass: with munge, the socket the connections to slurmdbd authenticate through
    storage="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=16819
AccountingStoragePass=$state/munge/munge.socket
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/linux"
else
    storage="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

cat > "$state/slurm.conf" <<EOF
$MARKER
ClusterName=gapbench-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$state/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
$storage
ReturnToService=2
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$state/slurm.conf"
mkdir -p "$(dirname "$SYSTEM_CONF")"
cp "$SLURM_CONF" "$SYSTEM_CONF"
if $accounting; then
    slurmdbd
    wait_until slurmdbd sacctmgr -n list cluster
    if [[ -z $(sacctmgr -n list account "$ACCOUNT" format=account) ]]; then
        sacctmgr -i add cluster gapbench-local > /dev/null
        sacctmgr -i add account "$ACCOUNT" description="gapbench test account" > /dev/null
        sacctmgr -i add user root account="$ACCOUNT" defaultaccount="$ACCOUNT" > /dev/null
    fi
fi
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
wait_until "the SLURM node" bash -c "sinfo -h -o %t | grep -q '^idle'"  # until it takes jobs
echo "export SLURM_CONF=$SLURM_CONF"

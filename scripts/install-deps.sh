#!/usr/bin/env bash
# Installs the Debian 12 packages NTKGram builds, runs and tests with (as root, or via sudo).
# Swift itself is expected on PATH (swift.org toolchain).
set -euo pipefail
packages=(
  pkg-config libopenmpi-dev openmpi-bin    # MPI (CMPI shim, mpirun)
  libhdf5-dev hdf5-tools zlib1g-dev        # HDF5 (CHDF5 shim, h5dump), zlib (CZlib: gzip IDX)
  dataset-fashion-mnist                    # the real dataset of the jobs/ files
  libopenblas-dev liblapacke-dev           # BLAS/LAPACK (CLAPACK shim: the solver)
  procps time gzip iproute2                # pgrep/kill (fault tests), /usr/bin/time, gzip, ip
  man-db                                   # man ntkgram (scripts/install.sh, Tests/system/install.sh)
  r-cran-hdf5r gcc                         # R and C readers of the kernel file (Tests/interop/test_file_format.py)
  slurm-wlm munge libpmix-dev              # Slurm (Tests/system/slurm.sh); srun --mpi=pmix loads libpmix-dev's libpmix.so
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"""Settings for running the peers (podman, skopeo) on this kind of host."""

#: This host lacks CAP_SYS_RESOURCE: podman's default rlimits (raised above ours) are refused by
#: runc, so containers run by podman get lowered limits.
PODMAN_RUN_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]

//! The worker pod template shared by Deployments, StatefulSets and CronJobs.
//!
//! Pods meet the Pod Security Standards `restricted` profile: non-root, no privilege
//! escalation, all capabilities dropped, RuntimeDefault seccomp, read-only root filesystem.
//! The config hash and every credential's content hash are pod template annotations, so a
//! config change or a Secret rotation rolls the workers. Long-lived workers mount their
//! Integration's admin token Secret (the dead-letter API's token) and find it through
//! `SWITCHBOARD_ADMIN_TOKEN_FILE`; it is no annotation, since a new token needs no restart.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use switchboard_worker::config as contract;
use switchboard_worker::runtime::admin::ADMIN_TOKEN_FILE_ENV;

use super::metadata::{ANNOTATION_CONFIG_HASH, credential_annotation};
use super::worker_config::WorkerMounts;
use crate::api::Workers;

/// User and group id the workers run as (the distroless `nonroot` user).
pub const WORKER_UID: i64 = 65532;
/// Name of the worker container.
pub const WORKER_CONTAINER: &str = "worker";
/// Name of the volume holding the durable queue.
pub const DATA_VOLUME: &str = "data";

/// Everything that varies between the pod templates of the worker kinds.
pub(crate) struct PodParts<'a> {
    pub labels: BTreeMap<String, String>,
    pub image: &'a str,
    pub args: Vec<String>,
    pub config_map: &'a str,
    pub config_hash: &'a str,
    pub mounts: &'a WorkerMounts,
    pub credential_hashes: &'a BTreeMap<String, String>,
    pub service_account: &'a str,
    pub workers: &'a Workers,
    /// Serve the inbound port.
    pub inbound: bool,
    /// Run as a long-lived server with probes (false for run-once Jobs).
    pub server: bool,
    /// Mount the ServiceAccount token (run-once Jobs report their run into the status).
    pub api_access: bool,
    /// Where the queue lives: a pod volume, or a claim template of a StatefulSet.
    pub data_volume: Option<Volume>,
    /// The Secret holding the admin token of the dead-letter API (long-lived workers only).
    pub admin_token_secret: Option<&'a str>,
}

/// Name of the volume holding the admin token.
pub const ADMIN_TOKEN_VOLUME: &str = "admin-token";

/// Default requests and limits of a worker container.
pub fn default_resources() -> ResourceRequirements {
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])
    };
    ResourceRequirements {
        requests: Some(quantities("50m", "64Mi")),
        limits: Some(quantities("500m", "256Mi")),
        ..ResourceRequirements::default()
    }
}

/// The container security context of the `restricted` profile.
pub fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(WORKER_UID),
        run_as_group: Some(WORKER_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// The pod security context of the `restricted` profile.
pub fn restricted_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(WORKER_UID),
        run_as_group: Some(WORKER_UID),
        fs_group: Some(WORKER_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The emptyDir volume of a pod-local queue.
pub(crate) fn empty_dir_data_volume(size: &str) -> Volume {
    Volume {
        name: DATA_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(size.into())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Build a worker pod template.
pub(crate) fn worker_pod_template(parts: PodParts<'_>) -> PodTemplateSpec {
    let mut annotations =
        BTreeMap::from([(ANNOTATION_CONFIG_HASH.to_string(), parts.config_hash.to_string())]);
    for name in parts.mounts.credentials.keys() {
        if let Some(hash) = parts.credential_hashes.get(name) {
            annotations.insert(credential_annotation(name), hash.clone());
        }
    }

    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: parts.config_map.into(),
                items: Some(vec![KeyToPath {
                    key: contract::CONFIG_FILE_NAME.into(),
                    path: contract::CONFIG_FILE_NAME.into(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let mut volume_mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: contract::CONFIG_MOUNT_PATH.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..VolumeMount::default() },
        VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: contract::DATA_MOUNT_PATH.into(),
            ..VolumeMount::default()
        },
    ];
    if let Some(data) = parts.data_volume {
        volumes.push(data);
    }
    for mount in parts.mounts.credentials.values() {
        volumes.push(Volume {
            name: mount.volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(mount.secret.clone()),
                default_mode: Some(0o440),
                items: Some(
                    mount
                        .items
                        .iter()
                        .map(|(key, file)| KeyToPath {
                            key: key.clone(),
                            path: file.clone(),
                            ..KeyToPath::default()
                        })
                        .collect(),
                ),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        volume_mounts.push(VolumeMount {
            name: mount.volume.clone(),
            mount_path: mount.directory.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    for ca in parts.mounts.certificate_authorities.values() {
        volumes.push(Volume {
            name: ca.volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(ca.secret.clone()),
                default_mode: Some(0o444),
                items: Some(vec![KeyToPath {
                    key: ca.key.clone(),
                    path: "ca.crt".into(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        volume_mounts.push(VolumeMount {
            name: ca.volume.clone(),
            mount_path: ca.directory.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }

    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        EnvVar {
            name: "RUST_LOG".into(),
            value: Some(parts.workers.log_level.clone()),
            ..EnvVar::default()
        },
    ];
    if let Some(secret) = parts.admin_token_secret {
        // Optional: the data path never waits for the admin API's Secret. The operator
        // creates it before the workers; if it is deleted, the operator recreates it and the
        // kubelet updates the file, which the worker re-reads on every admin request.
        volumes.push(Volume {
            name: ADMIN_TOKEN_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.into()),
                default_mode: Some(0o440),
                optional: Some(true),
                items: Some(vec![KeyToPath {
                    key: contract::ADMIN_TOKEN_KEY.into(),
                    path: contract::ADMIN_TOKEN_KEY.into(),
                    ..KeyToPath::default()
                }]),
            }),
            ..Volume::default()
        });
        volume_mounts.push(VolumeMount {
            name: ADMIN_TOKEN_VOLUME.into(),
            mount_path: contract::ADMIN_TOKEN_MOUNT_PATH.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        env.push(EnvVar {
            name: ADMIN_TOKEN_FILE_ENV.into(),
            value: Some(format!(
                "{}/{}",
                contract::ADMIN_TOKEN_MOUNT_PATH,
                contract::ADMIN_TOKEN_KEY
            )),
            ..EnvVar::default()
        });
    }

    let mut ports = Vec::new();
    if parts.inbound {
        ports.push(ContainerPort {
            name: Some("http".into()),
            container_port: contract::INBOUND_PORT.into(),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        });
    }
    if parts.server {
        ports.push(ContainerPort {
            name: Some("admin".into()),
            container_port: contract::ADMIN_PORT.into(),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        });
    }

    let container = Container {
        name: WORKER_CONTAINER.into(),
        image: Some(parts.image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["switchboard".into()]),
        args: Some(parts.args),
        env: Some(env),
        ports: (!ports.is_empty()).then_some(ports),
        liveness_probe: parts.server.then(|| http_probe("/livez", 10, 3)),
        readiness_probe: parts.server.then(|| http_probe("/readyz", 5, 2)),
        resources: Some(parts.workers.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(volume_mounts),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };

    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(parts.labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(parts.service_account.into()),
            automount_service_account_token: Some(parts.api_access),
            containers: vec![container],
            volumes: Some(volumes),
            security_context: Some(restricted_pod_security()),
            node_selector: parts.workers.node_selector.clone(),
            tolerations: parts.workers.tolerations.clone(),
            affinity: parts.workers.affinity.clone(),
            priority_class_name: parts.workers.priority_class_name.clone(),
            termination_grace_period_seconds: Some(30),
            restart_policy: (!parts.server).then(|| "Never".into()),
            ..PodSpec::default()
        }),
    }
}

//! Integration → ConfigMap, Deployment or StatefulSet, Service, RBAC and PodDisruptionBudget.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet,
    StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, PersistentVolumeClaimSpec, Service, ServicePort, ServiceSpec,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use switchboard_worker::config as contract;

use super::admin_token::admin_token_secret_name;
use super::metadata::{child_meta, child_name, integration_labels, selector_labels, sha256_hex};
use super::pod::{DATA_VOLUME, PodParts, empty_dir_data_volume, worker_pod_template};
use super::rbac::{render_role, render_role_binding, render_service_account};
use super::worker_config::render_worker_config;
use super::{IntegrationChildren, References, RenderErrors, RenderSettings, Workload};
use crate::api::{Integration, QueueStorageKind};

/// Name of the worker objects (ConfigMap, Deployment, ServiceAccount, Role, ...).
pub fn worker_name(integration: &str) -> String {
    child_name(integration, "worker", 63)
}

/// Name of the inbound Service.
pub fn service_name(integration: &str) -> String {
    child_name(integration, "", 63)
}

/// The rendered config file and its hash.
pub(crate) fn config_map(meta: ObjectMeta, config: &contract::WorkerConfig) -> (ConfigMap, String) {
    let text = config.to_yaml();
    let hash = sha256_hex(text.as_bytes());
    let config_map = ConfigMap {
        metadata: meta,
        data: Some(BTreeMap::from([(contract::CONFIG_FILE_NAME.to_string(), text)])),
        ..ConfigMap::default()
    };
    (config_map, hash)
}

/// Render every child object of an Integration.
pub fn render_integration(
    integration: &Integration,
    refs: &References,
    settings: &RenderSettings,
) -> Result<IntegrationChildren, RenderErrors> {
    let (mut config, mounts) = render_worker_config(integration, refs)?;
    config.lineage = settings.lineage.clone();
    let spec = &integration.spec;
    let name = integration.name_any();
    let namespace = integration.namespace();
    let labels = integration_labels(&name, &spec.owner.team, "worker");
    let selector = selector_labels(&name, "worker");
    let worker = worker_name(&name);
    let inbound = spec.source.is_inbound();
    let meta = || child_meta(integration, worker.clone(), labels.clone());

    let (config_map, config_hash) = config_map(meta(), &config);
    let persistent = spec.workers.queue.storage == QueueStorageKind::PersistentVolume;
    let template = worker_pod_template(PodParts {
        labels: labels.clone(),
        image: &settings.image,
        args: vec![
            "worker".into(),
            "--config".into(),
            format!("{}/{}", contract::CONFIG_MOUNT_PATH, contract::CONFIG_FILE_NAME),
        ],
        config_map: &worker,
        config_hash: &config_hash,
        mounts: &mounts,
        credential_hashes: &refs.credential_hashes,
        service_account: &worker,
        workers: &spec.workers,
        inbound,
        server: true,
        api_access: false,
        data_volume: (!persistent).then(|| empty_dir_data_volume(&spec.workers.queue.size)),
        admin_token_secret: Some(&admin_token_secret_name(&name)),
    });
    let label_selector =
        LabelSelector { match_labels: Some(selector.clone()), ..LabelSelector::default() };
    let replicas = spec.workers.replicas;

    let workload = if persistent {
        Workload::StatefulSet(Box::new(StatefulSet {
            metadata: meta(),
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                selector: label_selector.clone(),
                service_name: Some(service_name(&name)),
                template,
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some(DATA_VOLUME.into()),
                        labels: Some(labels.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: Some(vec!["ReadWriteOnce".into()]),
                        storage_class_name: spec.workers.queue.storage_class_name.clone(),
                        resources: Some(VolumeResourceRequirements {
                            requests: Some(BTreeMap::from([(
                                "storage".to_string(),
                                Quantity(spec.workers.queue.size.clone()),
                            )])),
                            ..VolumeResourceRequirements::default()
                        }),
                        ..PersistentVolumeClaimSpec::default()
                    }),
                    ..PersistentVolumeClaim::default()
                }]),
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        }))
    } else {
        Workload::Deployment(Box::new(Deployment {
            metadata: meta(),
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: label_selector.clone(),
                template,
                // Never drop below the desired count while rolling: inbound senders keep a
                // receiver, and a rotated credential reaches every worker.
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_unavailable: Some(IntOrString::Int(0)),
                        max_surge: Some(IntOrString::Int(1)),
                    }),
                }),
                revision_history_limit: Some(5),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }))
    };

    let service = inbound.then(|| Service {
        metadata: child_meta(integration, service_name(&name), labels.clone()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector.clone()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    });

    let pod_disruption_budget = (replicas > 1).then(|| PodDisruptionBudget {
        metadata: meta(),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(label_selector),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    });

    Ok(IntegrationChildren {
        config,
        config_map,
        workload,
        service,
        service_account: render_service_account(meta()),
        role: render_role(meta(), &name),
        role_binding: render_role_binding(meta(), &worker, &worker, namespace),
        pod_disruption_budget,
    })
}

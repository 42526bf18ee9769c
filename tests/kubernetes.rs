//! The kubernetes region driver against a fake API server (one per
//! region), reached by the real kube client over HTTP: the objects and
//! labels it writes, standby and wake as whole-object applies, adoption
//! after a restart, permanent failures, retries, the readiness watch's
//! recovery (a cut watch, an expired version, no watch at all), and the
//! resync's orphan removal and drift repair. Every assertion is on the fake's objects or
//! on what the daemon reports.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::fake_kube::{FakeKube, Gone};
use common::*;
use deployd::config::RegionConfig;
use deployd::pb::{DeploymentStatus, DesiredState};
use hyper::Method;
use serde_json::{Value, json};

const REGIONS: [&str; 2] = ["k8s-east", "k8s-west"];

struct Clusters {
    fakes: BTreeMap<String, FakeKube>,
}

impl Clusters {
    async fn start() -> Self {
        let mut fakes = BTreeMap::new();
        for region in REGIONS {
            fakes.insert(region.to_string(), FakeKube::start().await);
        }
        Self { fakes }
    }

    fn config(&self) -> deployd::Config {
        let mut config = fast_config();
        config.regions = self
            .fakes
            .iter()
            .map(|(region, fake)| {
                (
                    region.clone(),
                    RegionConfig::Kubernetes {
                        kubeconfig: Some(fake.kubeconfig()),
                        context: Some("fake".into()),
                        sentinel_image: "sentinel.test/gateway:1".into(),
                        readiness: Default::default(),
                    },
                )
            })
            .collect();
        config
    }

    fn fake(&self, region: &str) -> &FakeKube {
        &self.fakes[region]
    }

    fn each(&self) -> impl Iterator<Item = (&str, &FakeKube)> {
        self.fakes.iter().map(|(r, f)| (r.as_str(), f))
    }
}

fn namespace(project: &str) -> String {
    format!("deployd-{}", project.replace('_', "-"))
}

fn name(deployment: &str) -> String {
    deployment.replace('_', "-")
}

fn labels(object: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(object["metadata"]["labels"].clone()).unwrap_or_default()
}

fn replicas(fake: &FakeKube, project: &str, deployment: &str) -> Option<i64> {
    fake.get("replicasets", &namespace(project), &name(deployment))
        .and_then(|rs| rs["spec"]["replicas"].as_i64())
}

async fn wait_replicas(fake: &FakeKube, project: &str, deployment: &str, want: i64) {
    eventually(
        &format!("{deployment} has {want} replica(s)"),
        Duration::from_secs(10),
        || async { (replicas(fake, project, deployment) == Some(want)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_deploy_to_two_clusters_writes_the_specified_objects() {
    let clusters = Clusters::start().await;
    let daemon = TestDaemon::start_with(clusters.config()).await;
    let project = daemon.project("acme", "web").await;
    daemon
        .set_regions(
            &project.id,
            "production",
            &[("k8s-east", 2), ("k8s-west", 1)],
        )
        .await;
    let id = daemon
        .deploy_ready(&project.id, "production", "registry.test/web:1")
        .await;
    let ns = namespace(&project.id);
    let want_replicas = BTreeMap::from([("k8s-east", 2), ("k8s-west", 1)]);

    for (region, fake) in clusters.each() {
        let namespace = fake.get("namespaces", "", &ns).expect("namespace");
        assert_eq!(
            labels(&namespace)["app.kubernetes.io/managed-by"],
            "deployd"
        );
        assert_eq!(labels(&namespace)["deployd.io/project"], project.id);

        let rs = fake
            .get("replicasets", &ns, &name(&id))
            .expect("ReplicaSet");
        let rs_labels = labels(&rs);
        assert_eq!(rs_labels["app.kubernetes.io/managed-by"], "deployd");
        assert_eq!(rs_labels["deployd.io/project"], project.id);
        assert_eq!(rs_labels["deployd.io/environment"], "production");
        assert_eq!(rs_labels["deployd.io/deployment"], id);
        assert_eq!(rs["spec"]["replicas"], json!(want_replicas[region]));
        let container = &rs["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "registry.test/web:1");
        assert_eq!(
            container["env"][0],
            json!({ "name": "PORT", "value": "8080" })
        );
        assert_eq!(
            rs["spec"]["template"]["metadata"]["labels"]["deployd.io/deployment"],
            json!(id)
        );

        let service = fake.get("services", &ns, &name(&id)).expect("Service");
        assert_eq!(labels(&service)["deployd.io/deployment"], id);
        assert_eq!(
            service["spec"]["selector"]["deployd.io/deployment"],
            json!(id)
        );
        assert_eq!(service["spec"]["ports"][0]["port"], json!(8080));

        let sentinel = fake
            .get("deployments", &ns, "sentinel-production")
            .expect("sentinel Deployment");
        assert_eq!(sentinel["spec"]["replicas"], json!(3), "production: 3");
        assert_eq!(labels(&sentinel)["deployd.io/component"], "sentinel");
        assert_eq!(
            sentinel["spec"]["template"]["spec"]["containers"][0]["image"],
            "sentinel.test/gateway:1"
        );
        assert!(fake.get("services", &ns, "sentinel-production").is_some());

        let policy = fake
            .get("networkpolicies", &ns, &name(&id))
            .expect("NetworkPolicy");
        assert_eq!(labels(&policy)["deployd.io/deployment"], id);
        assert_eq!(
            policy["spec"]["podSelector"]["matchLabels"]["deployd.io/deployment"],
            json!(id)
        );
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
        let from = &policy["spec"]["ingress"][0]["from"];
        assert_eq!(from.as_array().map(Vec::len), Some(1), "only the sentinel");
        assert_eq!(
            from[0]["podSelector"]["matchLabels"],
            json!({ "deployd.io/component": "sentinel", "deployd.io/environment": "production" })
        );

        // The sentinel's side: egress to the deployment's port only.
        let egress = fake
            .get("networkpolicies", &ns, &format!("{}-egress", name(&id)))
            .expect("egress NetworkPolicy");
        assert_eq!(labels(&egress)["deployd.io/deployment"], id);
        assert_eq!(
            egress["spec"]["podSelector"]["matchLabels"],
            json!({ "deployd.io/component": "sentinel", "deployd.io/environment": "production" })
        );
        assert_eq!(egress["spec"]["policyTypes"], json!(["Egress"]));
        assert_eq!(
            egress["spec"]["egress"][0]["to"][0]["podSelector"]["matchLabels"]["deployd.io/deployment"],
            json!(id)
        );
        assert_eq!(egress["spec"]["egress"][0]["ports"][0]["port"], json!(8080));

        // Every write was a forced server-side apply by `deployd`.
        let writes = fake.writes();
        assert!(!writes.is_empty());
        for write in &writes {
            assert_eq!(write.method, Method::PATCH, "{write:?}");
            assert_eq!(write.content_type, "application/apply-patch+yaml");
            assert!(write.query.contains("fieldManager=deployd"), "{write:?}");
            assert!(write.query.contains("force=true"), "{write:?}");
        }
    }

    // Instances are the pods, at podIP:port.
    let deployment = daemon.get(&id).await;
    for region in &deployment.regions {
        let fake = clusters.fake(&region.region);
        let pods = fake.all("pods");
        let mut expected: Vec<String> = pods
            .values()
            .filter(|p| p["metadata"]["labels"]["deployd.io/deployment"] == json!(id))
            .map(|p| format!("{}:8080", p["status"]["podIP"].as_str().unwrap_or("")))
            .collect();
        let mut reported: Vec<String> =
            region.instances.iter().map(|i| i.address.clone()).collect();
        expected.sort();
        reported.sort();
        assert_eq!(reported, expected, "{}", region.region);
        assert_eq!(
            reported.len(),
            want_replicas[region.region.as_str()] as usize
        );
    }
}

#[tokio::test]
async fn standby_and_wake_reapply_the_whole_object_with_zero_and_n_replicas() {
    let clusters = Clusters::start().await;
    let mut config = clusters.config();
    config.standby_delay_ms = 50;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let (first, second) = daemon.two_production_deploys(&project.id).await;
    daemon.wait_desired(&first, DesiredState::Standby).await;
    let before: BTreeMap<&str, Value> = clusters
        .each()
        .map(|(r, f)| {
            (
                r,
                f.get("replicasets", &namespace(&project.id), &name(&second))
                    .expect("rs"),
            )
        })
        .collect();
    for (_, fake) in clusters.each() {
        wait_replicas(fake, &project.id, &first, 0).await;
        let rs = fake
            .get("replicasets", &namespace(&project.id), &name(&first))
            .expect("the scaled-down ReplicaSet stays");
        // The whole object was applied: nothing but the count changed.
        assert_eq!(
            rs["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1"
        );
        assert_eq!(labels(&rs)["deployd.io/deployment"], first);
        assert!(
            fake.get("services", &namespace(&project.id), &name(&first))
                .is_some()
        );
    }
    daemon
        .rollback(&second, &first)
        .await
        .expect("rollback wakes");
    for (region, fake) in clusters.each() {
        assert_eq!(replicas(fake, &project.id, &first), Some(1), "{region}");
        // The live one was not touched by the standby or the wake.
        let now = fake
            .get("replicasets", &namespace(&project.id), &name(&second))
            .expect("rs");
        assert_eq!(now["spec"], before[region]["spec"]);
    }
    assert_eq!(
        daemon.get(&first).await.status,
        DeploymentStatus::Ready as i32
    );
}

#[tokio::test]
async fn a_restart_adopts_what_exists_and_changes_nothing() {
    let clusters = Clusters::start().await;
    let daemon = TestDaemon::start_with(clusters.config()).await;
    let project = daemon.project("acme", "web").await;
    let id = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    daemon.drivers_settled().await;
    let versions = |fake: &FakeKube| -> BTreeMap<String, Value> {
        [
            "namespaces",
            "replicasets",
            "services",
            "deployments",
            "networkpolicies",
        ]
        .iter()
        .flat_map(|resource| {
            fake.all(resource).into_iter().map(move |((ns, n), v)| {
                (
                    format!("{resource}/{ns}/{n}"),
                    v["metadata"]["resourceVersion"].clone(),
                )
            })
        })
        .collect()
    };
    let before: Vec<_> = clusters.each().map(|(_, f)| versions(f)).collect();
    let writes_before: Vec<usize> = clusters.each().map(|(_, f)| f.writes().len()).collect();

    let daemon = daemon.stop().await.start().await;
    daemon.drivers_settled().await;
    for (i, (region, fake)) in clusters.each().enumerate() {
        // Start-up applied the running deployment again...
        assert!(
            fake.writes().len() > writes_before[i],
            "{region}: re-applied"
        );
        // ...and nothing changed.
        assert_eq!(versions(fake), before[i], "{region}");
        let pods = fake
            .all("pods")
            .values()
            .filter(|p| p["metadata"]["labels"]["deployd.io/deployment"] == json!(id))
            .count();
        assert_eq!(pods, 1, "{region}: no duplicate");
    }
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_or_crash_loops_fails_at_once_with_the_reason() {
    let clusters = Clusters::start().await;
    let mut config = clusters.config();
    // Far longer than the test's own deadline: only a fast failure passes.
    config.region_timeout_ms = 600_000;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    for (image, reason) in [
        ("registry.test/pull-fail:1", "ErrImagePull"),
        ("registry.test/crash:1", "CrashLoopBackOff"),
    ] {
        let id = daemon
            .create(image_request(&project.id, "production", image))
            .await;
        let failed = daemon.wait_status(&id, DeploymentStatus::Failed).await;
        assert!(
            failed.error_message.contains(reason),
            "{image}: {}",
            failed.error_message
        );
        // A failed deployment is scaled to zero.
        for (_, fake) in clusters.each() {
            wait_replicas(fake, &project.id, &id, 0).await;
        }
    }
}

#[tokio::test]
async fn server_errors_and_throttling_are_retried_until_the_apply_goes_through() {
    let clusters = Clusters::start().await;
    let daemon = TestDaemon::start_with(clusters.config()).await;
    let project = daemon.project("acme", "web").await;
    for (_, fake) in clusters.each() {
        fake.fail(Some(Method::PATCH), "/replicasets/", 500, 2);
        fake.fail(Some(Method::PATCH), "/services/", 409, 1);
        fake.fail(Some(Method::GET), "/pods", 429, 1);
    }
    let id = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    for (region, fake) in clusters.each() {
        let log = fake.log();
        let injected = log.iter().filter(|r| r.status == 500).count();
        assert_eq!(injected, 2, "{region}: both 500s were answered");
        assert!(log.iter().any(|r| r.status == 409), "{region}");
        assert_eq!(replicas(fake, &project.id, &id), Some(1), "{region}");
    }
}

#[tokio::test]
async fn an_invalid_spec_fails_the_deployment_with_kubernetes_message() {
    let clusters = Clusters::start().await;
    let mut config = clusters.config();
    config.region_timeout_ms = 600_000;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    clusters
        .fake("k8s-west")
        .fail(Some(Method::PATCH), "/replicasets/", 422, u32::MAX);
    let id = daemon
        .create(image_request(&project.id, "production", "nginx:1"))
        .await;
    let failed = daemon.wait_status(&id, DeploymentStatus::Failed).await;
    assert!(
        failed.error_message.contains("k8s-west") && failed.error_message.contains("422"),
        "{}",
        failed.error_message
    );
    assert!(failed.error_message.contains("injected by the test"));
}

/// An object set of a deployment this daemon never made.
fn foreign_workload(fake: &FakeKube, project: &str, deployment: &str) {
    let ns = namespace(project);
    let labels = json!({
        "app.kubernetes.io/managed-by": "deployd",
        "deployd.io/project": project,
        "deployd.io/environment": "production",
        "deployd.io/deployment": deployment,
        "deployd.io/component": "workload",
    });
    for (resource, kind, api, object) in [
        ("replicasets", "ReplicaSet", "apps/v1", name(deployment)),
        ("services", "Service", "v1", name(deployment)),
        (
            "networkpolicies",
            "NetworkPolicy",
            "networking.k8s.io/v1",
            name(deployment),
        ),
        (
            "networkpolicies",
            "NetworkPolicy",
            "networking.k8s.io/v1",
            format!("{}-egress", name(deployment)),
        ),
    ] {
        fake.insert(
            resource,
            json!({
                "apiVersion": api, "kind": kind,
                "metadata": { "name": object, "namespace": ns, "labels": labels },
                "spec": { "replicas": 1 },
            }),
        );
    }
}

fn exists(fake: &FakeKube, project: &str, deployment: &str) -> usize {
    let egress = format!("{}-egress", name(deployment));
    [
        ("replicasets", name(deployment)),
        ("services", name(deployment)),
        ("networkpolicies", name(deployment)),
        ("networkpolicies", egress),
    ]
    .iter()
    .filter(|(r, n)| fake.get(r, &namespace(project), n).is_some())
    .count()
}

#[tokio::test]
async fn orphans_are_removed_only_after_the_grace_period() {
    let clusters = Clusters::start().await;
    let mut config = clusters.config();
    config.resync_interval_ms = 20;
    config.orphan_grace_ms = 3_600_000;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let live = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let orphan = "dep_0000000000000000";
    let fake = clusters.fake("k8s-east");
    foreign_workload(fake, &project.id, orphan);

    let passes = daemon
        .handle()
        .resync
        .passes
        .load(std::sync::atomic::Ordering::Relaxed);
    eventually(
        "three more resync passes",
        Duration::from_secs(10),
        || async {
            (daemon
                .handle()
                .resync
                .passes
                .load(std::sync::atomic::Ordering::Relaxed)
                >= passes + 3)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        exists(fake, &project.id, orphan),
        4,
        "within the grace period"
    );

    let stopped = daemon.stop().await;
    let mut config = stopped.config.clone();
    config.orphan_grace_ms = 0;
    let daemon = stopped.start_with(config).await;
    eventually("the orphan is removed", Duration::from_secs(10), || async {
        (exists(fake, &project.id, orphan) == 0).then_some(())
    })
    .await;
    // The known deployment's objects stay.
    assert_eq!(exists(fake, &project.id, &live), 4);
    assert_eq!(
        daemon.get(&live).await.status,
        DeploymentStatus::Ready as i32
    );
}

#[tokio::test]
async fn a_drifted_workload_is_applied_again() {
    let clusters = Clusters::start().await;
    let mut config = clusters.config();
    config.resync_interval_ms = 20;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let id = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    daemon.drivers_settled().await;
    let fake = clusters.fake("k8s-east");
    let ns = namespace(&project.id);
    // Someone scales it by hand and deletes its Service.
    fake.edit("replicasets", &ns, &name(&id), |rs| {
        rs["spec"]["replicas"] = json!(7)
    });
    assert!(fake.remove("services", &ns, &name(&id)));
    eventually(
        "the resync restores the replicas and the Service",
        Duration::from_secs(10),
        || async {
            (replicas(fake, &project.id, &id) == Some(1)
                && fake.get("services", &ns, &name(&id)).is_some())
            .then_some(())
        },
    )
    .await;
    assert!(
        daemon
            .handle()
            .resync
            .reapplied
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn a_running_apply_is_seven_forced_applies_in_a_fixed_order() {
    let clusters = Clusters::start().await;
    let daemon = TestDaemon::start_with(clusters.config()).await;
    let project = daemon.project("acme", "web").await;
    let id = daemon.deploy_ready(&project.id, "preview", "nginx:1").await;
    daemon.drivers_settled().await;
    let ns = namespace(&project.id);
    let n = name(&id);
    for (region, fake) in clusters.each() {
        let writes: Vec<String> = fake.writes().iter().map(|w| w.path.clone()).collect();
        assert_eq!(
            writes,
            [
                format!("/api/v1/namespaces/{ns}"),
                format!("/apis/apps/v1/namespaces/{ns}/deployments/sentinel-preview"),
                format!("/api/v1/namespaces/{ns}/services/sentinel-preview"),
                format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{n}"),
                format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{n}-egress"),
                format!("/api/v1/namespaces/{ns}/services/{n}"),
                format!("/apis/apps/v1/namespaces/{ns}/replicasets/{n}"),
            ],
            "{region}"
        );
        // Outside production the sentinel has one replica.
        let sentinel = fake
            .get("deployments", &ns, "sentinel-preview")
            .expect("sentinel");
        assert_eq!(sentinel["spec"]["replicas"], json!(1));
        // Reads are the readiness watch's: ReplicaSets and pods across
        // namespaces, deployd's workloads only, listed and then watched.
        // No read names the deployment.
        let reads: Vec<_> = fake
            .log()
            .into_iter()
            .filter(|r| r.method == Method::GET)
            .collect();
        for read in &reads {
            let watched =
                ["/apis/apps/v1/replicasets", "/api/v1/pods"].contains(&read.path.as_str());
            assert!(watched, "{region}: {read:?}");
            assert!(
                read.query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Ddeployd%2Cdeployd.io%2Fcomponent%3Dworkload"),
                "{region}: {read:?}"
            );
        }
        for path in ["/apis/apps/v1/replicasets", "/api/v1/pods"] {
            let of = |verb: &str| {
                reads
                    .iter()
                    .filter(|r| r.path == path && r.verb == verb)
                    .count()
            };
            assert_eq!(of("list"), 1, "{region}: {path} listed once");
            assert!(of("watch") >= 1, "{region}: {path} watched");
        }
    }
}

#[tokio::test]
async fn with_a_fifth_of_calls_failing_every_deployment_still_gets_ready() {
    let clusters = Clusters::start().await;
    let mut config = clusters.config();
    config.region_timeout_ms = 20_000;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    for (i, (_, fake)) in clusters.each().enumerate() {
        let status = if i == 0 { 500 } else { 429 };
        fake.fail_percent(status, 20);
    }
    let mut ids = Vec::new();
    for i in 0..20 {
        let request = image_request(&project.id, "production", &format!("nginx:{i}"));
        ids.push(daemon.create(request).await);
    }
    let mut ready = 0;
    for id in &ids {
        let terminal = eventually(
            &format!("{id} is READY or FAILED"),
            Duration::from_secs(30),
            || async {
                let d = daemon.get(id).await;
                [
                    DeploymentStatus::Ready as i32,
                    DeploymentStatus::Failed as i32,
                ]
                .contains(&d.status)
                .then_some(d)
            },
        )
        .await;
        if terminal.status == DeploymentStatus::Ready as i32 {
            ready += 1;
        } else {
            eprintln!("{id}: {}", terminal.error_message);
        }
    }
    assert!(
        ready * 100 >= ids.len() * 99,
        "{ready} of {} READY",
        ids.len()
    );
    for (region, fake) in clusters.each() {
        let injected = fake.log().iter().filter(|r| r.status >= 429).count();
        assert!(injected > 0, "{region}: faults were injected");
    }
}

#[tokio::test]
async fn when_every_call_fails_the_deployment_fails_and_no_route_moves() {
    let clusters = Clusters::start().await;
    let mut config = clusters.config();
    config.region_timeout_ms = 300;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let live = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let routes = route_map(&daemon.routes(&project.id).await);
    for (_, fake) in clusters.each() {
        fake.fail(None, "/", 500, u32::MAX);
    }
    let id = daemon
        .create(image_request(&project.id, "production", "nginx:2"))
        .await;
    let failed = daemon.wait_status(&id, DeploymentStatus::Failed).await;
    assert!(
        failed.error_message.contains("500"),
        "{}",
        failed.error_message
    );
    assert_eq!(route_map(&daemon.routes(&project.id).await), routes);
    assert_eq!(
        daemon.get_project(&project.id).await.live_deployment_id,
        live
    );
}

/// The real binary, configured by a file, against the fake.
#[tokio::test]
async fn the_binary_deploys_to_a_cluster_named_in_its_config_file() {
    use deployd::pb;
    use deployd::pb::deployment_service_client::DeploymentServiceClient;
    use deployd::pb::project_service_client::ProjectServiceClient;
    use deployd::pb::workspace_service_client::WorkspaceServiceClient;

    let fake = FakeKube::start().await;
    let config_path = fake.dir().join("deployd.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"listen = "127.0.0.1:0"
data_dir = "{}"
readiness_poll_ms = 10

[edge]
enabled = false

[builder]
driver = "simulated"
duration_ms = 0

[regions.k8s-1]
driver = "kubernetes"
kubeconfig = "{}"
context = "fake"
"#,
            fake.dir().join("data").display(),
            fake.kubeconfig().display()
        ),
    )
    .expect("write config");
    let daemon = common::process::DaemonProcess::spawn(&config_path)
        .await
        .expect("starts");
    let channel = daemon.channel().await;
    let workspace = WorkspaceServiceClient::new(channel.clone())
        .create_workspace(pb::CreateWorkspaceRequest {
            slug: "acme".into(),
            name: "Acme".into(),
        })
        .await
        .expect("workspace")
        .into_inner()
        .workspace
        .expect("workspace");
    let project = ProjectServiceClient::new(channel.clone())
        .create_project(pb::CreateProjectRequest {
            workspace_id: workspace.id,
            slug: "web".into(),
            name: "Web".into(),
        })
        .await
        .expect("project")
        .into_inner()
        .project
        .expect("project");
    let mut deployments = DeploymentServiceClient::new(channel);
    let id = deployments
        .create_deployment(image_request(&project.id, "production", "nginx:1"))
        .await
        .expect("create")
        .into_inner()
        .deployment_id;
    let ready = ready_through(&deployments, &id, Duration::from_secs(20)).await;
    assert_eq!(ready.regions.len(), 1);
    assert_eq!(replicas(&fake, &project.id, &id), Some(1));
    assert!(
        fake.get(
            "deployments",
            &namespace(&project.id),
            "sentinel-production"
        )
        .is_some()
    );
}

#[tokio::test]
async fn a_restart_while_deploying_adopts_the_objects_it_had_applied() {
    let clusters = Clusters::start().await;
    let daemon = TestDaemon::start_with(clusters.config()).await;
    let project = daemon.project("acme", "web").await;
    for (_, fake) in clusters.each() {
        fake.hold_pods(true);
    }
    let id = daemon
        .create(image_request(&project.id, "production", "nginx:1"))
        .await;
    for (_, fake) in clusters.each() {
        wait_replicas(fake, &project.id, &id, 1).await;
    }
    daemon.drivers_settled().await;
    assert_eq!(
        daemon.get(&id).await.status,
        DeploymentStatus::Deploying as i32
    );
    // Not `resourceVersion`: the pods getting ready change the status,
    // which moves it, as in a real cluster. The same object with the same
    // spec keeps its uid and generation.
    let uid = |fake: &FakeKube| {
        fake.get("replicasets", &namespace(&project.id), &name(&id))
            .map(|rs| {
                (
                    rs["metadata"]["uid"].clone(),
                    rs["metadata"]["generation"].clone(),
                    rs["spec"].clone(),
                )
            })
    };
    let before: Vec<_> = clusters.each().map(|(_, f)| uid(f)).collect();

    let daemon = daemon.stop().await.start().await;
    for (_, fake) in clusters.each() {
        fake.hold_pods(false);
    }
    daemon.wait_status(&id, DeploymentStatus::Ready).await;
    for (i, (region, fake)) in clusters.each().enumerate() {
        assert_eq!(uid(fake), before[i], "{region}: the same object, unchanged");
        let pods = fake
            .all("pods")
            .values()
            .filter(|p| p["metadata"]["labels"]["deployd.io/deployment"] == json!(id))
            .count();
        assert_eq!(pods, 1, "{region}: no duplicate pod");
    }
}

#[tokio::test]
async fn a_kubeconfig_that_cannot_be_read_fails_the_deployment_naming_the_file() {
    let clusters = Clusters::start().await;
    let mut config = clusters.config();
    config.region_timeout_ms = 600_000;
    let missing = clusters.fake("k8s-east").dir().join("missing-kubeconfig");
    config.regions.insert(
        "k8s-east".into(),
        RegionConfig::Kubernetes {
            kubeconfig: Some(missing.clone()),
            context: None,
            sentinel_image: "sentinel.test/gateway:1".into(),
            readiness: Default::default(),
        },
    );
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let id = daemon
        .create(image_request(&project.id, "production", "nginx:1"))
        .await;
    let failed = daemon.wait_status(&id, DeploymentStatus::Failed).await;
    assert!(
        failed.error_message.contains("missing-kubeconfig"),
        "{}",
        failed.error_message
    );
    assert!(clusters.fake("k8s-east").log().is_empty());
}

/// Every object the fake holds of `deployment`, by resource.
fn objects_of(fake: &FakeKube, deployment: &str) -> BTreeMap<&'static str, usize> {
    ["replicasets", "services", "networkpolicies", "pods"]
        .into_iter()
        .map(|resource| {
            let count = fake
                .all(resource)
                .values()
                .filter(|o| o["metadata"]["labels"]["deployd.io/deployment"] == json!(deployment))
                .count();
            (resource, count)
        })
        .collect()
}

/// One ReplicaSet, Service and pair of policies per deployment, and as
/// many pods as it has replicas: nothing was created twice.
fn assert_no_duplicates(fake: &FakeKube, region: &str, deployment: &str, replicas: usize) {
    assert_eq!(
        objects_of(fake, deployment),
        BTreeMap::from([
            ("networkpolicies", 2),
            ("pods", replicas),
            ("replicasets", 1),
            ("services", 1),
        ]),
        "{region}"
    );
}

/// Calls of `verb` on a cluster-wide path of the readiness watch.
fn watch_calls(fake: &FakeKube, verb: &str, path: &str) -> usize {
    fake.log()
        .iter()
        .filter(|r| r.verb == verb && r.path == path)
        .count()
}

const PODS: &str = "/api/v1/pods";
const REPLICA_SETS: &str = "/apis/apps/v1/replicasets";

#[tokio::test]
async fn a_watch_cut_mid_deploy_resumes_from_its_version_and_the_deploy_gets_ready() {
    let clusters = Clusters::start().await;
    let mut config = clusters.config();
    config.region_timeout_ms = 600_000;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    daemon
        .set_regions(
            &project.id,
            "production",
            &[("k8s-east", 3), ("k8s-west", 2)],
        )
        .await;
    // Every watch is cut after two events: a deploy's dozen events
    // arrive over several resumed watches.
    for (_, fake) in clusters.each() {
        fake.drop_watches_after_events(Some(2));
    }
    let id = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let deployment = daemon.get(&id).await;
    for (region, fake) in clusters.each() {
        let replicas = if region == "k8s-east" { 3 } else { 2 };
        assert_no_duplicates(fake, region, &id, replicas);
        // Resumed, not listed again: each resume named the version it
        // had reached, and that was enough.
        for path in [PODS, REPLICA_SETS] {
            assert_eq!(watch_calls(fake, "list", path), 1, "{region} {path}");
        }
        let resumed_pods = watch_calls(fake, "watch", PODS);
        assert!(resumed_pods >= 3, "{region}: {resumed_pods} pod watches");
        // What the daemon reports is what the cluster runs.
        let reported = deployment
            .regions
            .iter()
            .find(|r| r.region == region)
            .map(|r| r.instances.len());
        assert_eq!(reported, Some(replicas), "{region}");
    }
}

#[tokio::test]
async fn watches_cut_on_a_timer_resume_and_deploys_get_ready() {
    let clusters = Clusters::start().await;
    let mut config = clusters.config();
    config.region_timeout_ms = 600_000;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    // A slower kubelet and watches that live 20 ms: deploys span cuts.
    for (_, fake) in clusters.each() {
        fake.kubelet_delay(Duration::from_millis(5));
        fake.drop_watches_after(Some(Duration::from_millis(20)));
    }
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            daemon
                .deploy_ready(&project.id, "production", &format!("nginx:{i}"))
                .await,
        );
    }
    for (region, fake) in clusters.each() {
        for id in &ids {
            assert_no_duplicates(fake, region, id, 1);
        }
        for path in [PODS, REPLICA_SETS] {
            assert_eq!(
                watch_calls(fake, "list", path),
                1,
                "{region} {path}: resumed, not re-listed"
            );
        }
    }
}

#[tokio::test]
async fn an_expired_resource_version_relists_and_the_deploy_still_gets_ready() {
    for gone in [Gone::Event, Gone::Status] {
        let clusters = Clusters::start().await;
        let mut config = clusters.config();
        config.region_timeout_ms = 600_000;
        let daemon = TestDaemon::start_with(config).await;
        let project = daemon.project("acme", "web").await;
        for (_, fake) in clusters.each() {
            fake.hold_pods(true);
        }
        let id = daemon
            .create(image_request(&project.id, "production", "nginx:1"))
            .await;
        for (_, fake) in clusters.each() {
            wait_replicas(fake, &project.id, &id, 1).await;
            eventually(
                "both kinds are watched",
                Duration::from_secs(10),
                || async {
                    (watch_calls(fake, "watch", PODS) >= 1
                        && watch_calls(fake, "watch", REPLICA_SETS) >= 1)
                        .then_some(())
                },
            )
            .await;
        }
        // The versions the driver holds are compacted away while its pods
        // are still starting; then they get ready.
        for (_, fake) in clusters.each() {
            fake.expire_versions(gone);
            fake.hold_pods(false);
        }
        let ready = daemon.wait_status(&id, DeploymentStatus::Ready).await;
        for (region, fake) in clusters.each() {
            for path in [PODS, REPLICA_SETS] {
                let lists = watch_calls(fake, "list", path);
                assert!(
                    lists >= 2,
                    "{gone:?} {region} {path}: listed again ({lists})"
                );
            }
            if gone == Gone::Status {
                let gone_answers = fake.log().iter().filter(|r| r.status == 410).count();
                assert!(gone_answers >= 1, "{region}: a resume was answered 410");
            }
            assert_no_duplicates(fake, region, &id, 1);
        }
        assert_eq!(ready.regions.len(), 2);
    }
}

#[tokio::test]
async fn without_a_watch_readiness_reads_the_cluster_and_the_deploy_gets_ready() {
    let clusters = Clusters::start().await;
    let mut config = clusters.config();
    config.region_timeout_ms = 600_000;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    for (_, fake) in clusters.each() {
        fake.fail_verb("watch", 500, u32::MAX);
    }
    let id = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let ns = namespace(&project.id);
    for (region, fake) in clusters.each() {
        let log = fake.log();
        assert!(
            log.iter()
                .filter(|r| r.verb == "watch")
                .all(|r| r.status == 500),
            "{region}: no watch was ever established"
        );
        // Readiness read the ReplicaSet from the API server instead: on its
        // own, or in the list that precedes every watch call (a list is
        // current when it answers, so the cache serves it until the watch
        // call fails), once the ReplicaSet existed.
        let rs = format!("/apis/apps/v1/namespaces/{ns}/replicasets/{}", name(&id));
        let created = log
            .iter()
            .position(|r| r.verb == "patch" && r.path == rs && r.status < 300)
            .unwrap_or_else(|| panic!("{region}: the ReplicaSet was never applied"));
        assert!(
            log[created..].iter().any(|r| r.status == 200
                && ((r.verb == "get" && r.path == rs)
                    || (r.verb == "list" && r.path == REPLICA_SETS))),
            "{region}: the ReplicaSet was never read after it was applied"
        );
        assert_no_duplicates(fake, region, &id, 1);
    }
}

//! What a failed Kubernetes call means for deployd, and which pod states
//! no amount of waiting fixes.

use k8s_openapi::api::core::v1::Pod;

use crate::io::region::DriverError;

/// 409 (a conflict), 429 (throttled), 5xx and every failure to reach the
/// API server are retried (the reconciler backs off, the readiness watch
/// keeps looking until the region timeout); any other 4xx is the request's
/// own fault and fails the step with Kubernetes' message.
pub fn classify(what: &str, error: kube::Error) -> DriverError {
    match error {
        kube::Error::Api(status) => {
            let code = status.code;
            let message = format!(
                "{what}: Kubernetes answered {code} {}: {}",
                status.reason, status.message
            );
            if retryable(code) {
                DriverError::transient(message)
            } else {
                DriverError::permanent(message)
            }
        }
        // Connection refused or reset, TLS, a timed-out call, a body that
        // was cut: the next try may get through.
        other => DriverError::transient(format!("{what}: {other}")),
    }
}

pub fn retryable(code: u16) -> bool {
    code == 409 || code == 429 || !(400..500).contains(&code)
}

/// Waiting reasons after which a container does not start by itself:
/// the image cannot be had, its configuration is wrong, or it keeps
/// crashing.
const PERMANENT_WAITING: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CrashLoopBackOff",
];

/// Why `pod` will not get ready without a new deployment, if that is so.
pub fn permanent_failure(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|status| {
        let waiting = status.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        PERMANENT_WAITING.contains(&reason).then(|| {
            let message = waiting.message.as_deref().unwrap_or("");
            format!(
                "pod {name}: container {}: {reason}{}{message}",
                status.name,
                if message.is_empty() { "" } else { ": " }
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_conflicts_throttling_and_server_errors_are_retried() {
        for code in [409, 429, 500, 503, 504] {
            assert!(retryable(code), "{code}");
        }
        for code in [400, 403, 404, 422] {
            assert!(!retryable(code), "{code}");
        }
    }

    fn waiting(reason: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "web-0" },
            "status": { "containerStatuses": [{
                "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": { "waiting": { "reason": reason, "message": "details" } },
            }] },
        }))
        .unwrap()
    }

    #[test]
    fn only_waiting_reasons_that_do_not_pass_by_themselves_are_permanent() {
        assert_eq!(
            permanent_failure(&waiting("ImagePullBackOff")).as_deref(),
            Some("pod web-0: container app: ImagePullBackOff: details")
        );
        assert!(permanent_failure(&waiting("CrashLoopBackOff")).is_some());
        assert_eq!(permanent_failure(&waiting("ContainerCreating")), None);
    }
}

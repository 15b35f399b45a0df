//! `container.docker`: the image, privileges and Docker parameters.

use crate::core::Violation;
use crate::runtime::docker::HOST_ACCESS_HINT;

use super::Limits;

/// `container.docker`: image, `privileged`, every `parameters` problem
/// (unknown key, bad value) and, without `--allow-host-access`, every
/// parameter that reaches into the host; one violation each.
pub(super) fn validate_docker(d: &marathon::Docker, limits: &Limits, v: &mut Vec<Violation>) {
    if d.image.trim().is_empty() {
        v.push(Violation::new(
            "/container/docker/image",
            "must not be empty",
        ));
    }
    if d.privileged && !limits.allow_host_access {
        v.push(Violation::new(
            "/container/docker/privileged",
            format!("privileged containers are not allowed; {HOST_ACCESS_HINT}"),
        ));
    }
    let params: Vec<(String, String)> = d
        .parameters
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    if let Err(problems) = crate::runtime::docker::validate_parameters(&params) {
        for problem in problems {
            v.push(Violation::new("/container/docker/parameters", problem));
        }
    }
    if !limits.allow_host_access {
        for (i, problem) in
            crate::runtime::docker::host_access_problems(&params, &limits.protected_paths)
        {
            v.push(Violation::new(
                format!("/container/docker/parameters({i})"),
                problem,
            ));
        }
    }
}

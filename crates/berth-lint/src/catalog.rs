//! Every rule: hadolint's id, default severity and message, and a longer explanation for
//! `berth lint --explain`.

use crate::Severity;
use Severity::{Error as E, Ignore as Off, Info as I, Style as S, Warning as W};

/// One rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rule {
    pub code: &'static str,
    pub severity: Severity,
    /// The message findings carry (label rules put the label's name in it).
    pub message: &'static str,
    /// Why, and what to write instead.
    pub explain: &'static str,
}

const fn r(
    code: &'static str,
    severity: Severity,
    message: &'static str,
    explain: &'static str,
) -> Rule {
    Rule {
        code,
        severity,
        message,
        explain,
    }
}

/// The rules, by id.
pub const RULES: &[Rule] = &[
    r(
        "DL1000",
        E,
        "Dockerfile parse error",
        "The Dockerfile does not parse as BuildKit reads it; nothing else can be checked until it does. The message shows the offending line.",
    ),
    r(
        "DL1001",
        Off,
        "Please refrain from using inline ignore pragmas  `# hadolint ignore=DLxxxx`.",
        "Off by default. Teams that want every exception in the configuration file (where it is reviewed) turn it on to flag inline `# hadolint ignore=` pragmas.",
    ),
    r(
        "DL3000",
        E,
        "Use absolute WORKDIR",
        "A relative WORKDIR depends on the previous one, which a base image may change. Write `WORKDIR /app`, not `WORKDIR app`. Paths starting with a variable (`$HOME/app`) are not judged.",
    ),
    r(
        "DL3001",
        I,
        "For some bash commands it makes no sense running them in a Docker container like `ssh`, `vim`, `shutdown`, `service`, `ps`, `free`, `top`, `kill`, `mount`, `ifconfig`",
        "Interactive tools and service managers do nothing useful while an image builds: there is no terminal, no init system and nothing to stop. Remove the command.",
    ),
    r(
        "DL3002",
        W,
        "Last USER should not be root",
        "The image's final USER is the user its containers run as. Running as root makes any compromise of the process a compromise of the container. Switch to an unprivileged user at the end of the last stage (`USER app` or `USER 10001`).",
    ),
    r(
        "DL3003",
        W,
        "Use WORKDIR to switch to a directory",
        "`cd` in RUN lasts for that RUN only and hides where later instructions run. Use `WORKDIR /dir`, which also creates the directory.",
    ),
    r(
        "DL3004",
        E,
        "Do not use sudo as it leads to unpredictable behavior. Use a tool like gosu to enforce root",
        "RUN already runs as the current USER; sudo adds a TTY and PAM dependency and its behaviour varies between images. Switch with `USER root` … `USER app`, or use gosu/su-exec in an entrypoint.",
    ),
    r(
        "DL3006",
        W,
        "Always tag the version of an image explicitly",
        "An untagged FROM means `:latest`, which changes under you. Write `FROM debian:12.7` (or pin a digest). Stages used as bases, `scratch`, and images whose reference comes from an ARG with a tagged default are not findings.",
    ),
    r(
        "DL3007",
        W,
        "Using latest is prone to errors if the image will ever update. Pin the version explicitly to a release tag",
        "`:latest` is whatever was pushed last; builds stop being reproducible. Pin a release tag or a digest.",
    ),
    r(
        "DL3008",
        W,
        "Pin versions in apt get install. Instead of `apt-get install <package>` use `apt-get install <package>=<version>`",
        "Unpinned packages give different images from the same Dockerfile over time. Write `apt-get install -y curl=7.88.1-10+deb12u8`.",
    ),
    r(
        "DL3009",
        I,
        "Delete the apt lists (/var/lib/apt/lists) after installing something",
        "`apt-get update` leaves tens of MiB in /var/lib/apt/lists in the layer. End the same RUN with `rm -rf /var/lib/apt/lists/*`, or mount a cache at /var/lib/apt/lists.",
    ),
    r(
        "DL3010",
        I,
        "Use `ADD` for extracting archives into an image",
        "COPY of a local archive that a later RUN of the stage extracts (`tar -x`, `unzip`, …) keeps the archive in a layer. `ADD app.tar.gz /opt/` extracts it in one step.",
    ),
    r(
        "DL3011",
        E,
        "Valid UNIX ports range from 0 to 65535",
        "EXPOSE takes port numbers (or ranges) from 0 to 65535, optionally with `/tcp` or `/udp`.",
    ),
    r(
        "DL3012",
        E,
        "Multiple `HEALTHCHECK` instructions",
        "Only the last HEALTHCHECK of a stage takes effect; the others mislead readers. Keep one per stage.",
    ),
    r(
        "DL3013",
        W,
        "Pin versions in pip. Instead of `pip install <package>` use `pip install <package>==<version>` or `pip install --requirement <requirements file>`",
        "Unpinned pip packages change between builds. Pin with `==`, install from a requirements or constraints file, or install a local path.",
    ),
    r(
        "DL3014",
        W,
        "Use the `-y` switch to avoid manual input `apt-get -y install <package>`",
        "Without `-y` (or `--yes`, `--assume-yes`, `-qq`) apt-get asks for confirmation, which a build cannot give.",
    ),
    r(
        "DL3015",
        I,
        "Avoid additional packages by specifying `--no-install-recommends`",
        "Recommended packages are pulled in by default and often double an image's size. Add `--no-install-recommends` (or set `APT::Install-Recommends \"false\"` with `-o`).",
    ),
    r(
        "DL3016",
        W,
        "Pin versions in npm. Instead of `npm install <package>` use `npm install <package>@<version>`",
        "Unpinned npm packages change between builds. Write `npm install express@4.21.2`, or install from package-lock.json with `npm ci`.",
    ),
    r(
        "DL3018",
        W,
        "Pin versions in apk add. Instead of `apk add <package>` use `apk add <package>=<version>`",
        "Unpinned apk packages change between builds. Write `apk add curl=8.5.0-r0` (or `~` constraints).",
    ),
    r(
        "DL3019",
        I,
        "Use the `--no-cache` switch to avoid the need to use `--update` and remove `/var/cache/apk/*` when done installing packages",
        "`apk add --no-cache` fetches the index to a temporary place and leaves no cache in the layer.",
    ),
    r(
        "DL3020",
        E,
        "Use COPY instead of ADD for files and folders",
        "ADD also fetches URLs and extracts archives, so `ADD` of a plain file hides intent. Use COPY for files and directories; keep ADD for archives and URLs.",
    ),
    r(
        "DL3021",
        E,
        "COPY with more than 2 arguments requires the last argument to end with /",
        "With several sources the destination must be a directory, written with a trailing slash.",
    ),
    r(
        "DL3022",
        W,
        "`COPY --from` should reference a previously defined `FROM` alias",
        "`COPY --from=name` where no earlier stage is called `name` is read as an image reference and pulled, which is rarely what was meant. Define the stage first or write a full image reference.",
    ),
    r(
        "DL3023",
        E,
        "`COPY --from` cannot reference its own `FROM` alias",
        "A stage cannot copy from itself; BuildKit refuses the Dockerfile.",
    ),
    r(
        "DL3024",
        E,
        "FROM aliases (stage names) must be unique",
        "Two stages with one name make `--from` and `--target` ambiguous; BuildKit refuses the Dockerfile.",
    ),
    r(
        "DL3025",
        W,
        "Use arguments JSON notation for CMD and ENTRYPOINT arguments",
        "The shell form runs the command under `/bin/sh -c`, so it is not PID 1 and does not receive SIGTERM. Write `CMD [\"nginx\", \"-g\", \"daemon off;\"]`.",
    ),
    r(
        "DL3026",
        E,
        "Use only an allowed registry in the FROM image",
        "The configuration's `trustedRegistries` lists the registries base images may come from (`*.example.com` wildcards allowed; Docker Hub images count as `docker.io`).",
    ),
    r(
        "DL3027",
        W,
        "Do not use apt as it is meant to be an end-user tool, use apt-get or apt-cache instead",
        "`apt`'s command-line interface is not stable for scripts and warns so. Use apt-get and apt-cache.",
    ),
    r(
        "DL3028",
        W,
        "Pin versions in gem install. Instead of `gem install <gem>` use `gem install <gem>:<version>`",
        "Unpinned gems change between builds. Write `gem install rails:7.1.3` or `-v 7.1.3`.",
    ),
    r(
        "DL3029",
        W,
        "Do not use --platform flag with FROM",
        "A fixed `--platform` makes a multi-platform build produce the wrong architecture. `--platform=$BUILDPLATFORM` (cross-compiling stages) and `$TARGETPLATFORM` are not findings.",
    ),
    r(
        "DL3030",
        W,
        "Use the -y switch to avoid manual input `yum install -y <package>`",
        "yum asks for confirmation without `-y` / `--assumeyes`.",
    ),
    r(
        "DL3032",
        W,
        "`yum clean all` missing after yum command.",
        "yum's cache stays in the layer unless the same RUN ends with `yum clean all` (or `rm -rf /var/cache/yum`).",
    ),
    r(
        "DL3033",
        W,
        "Specify version with `yum install -y <package>-<version>`.",
        "Unpinned yum packages change between builds. Write `yum install -y httpd-2.4.57`.",
    ),
    r(
        "DL3034",
        W,
        "Non-interactive switch missing from `zypper` command: `zypper install -y`",
        "zypper asks for confirmation without `-y` / `--no-confirm` (or the global `-n` / `--non-interactive`).",
    ),
    r(
        "DL3035",
        W,
        "Do not use `zypper dist-upgrade`.",
        "A distribution upgrade inside an image build belongs in a new base image.",
    ),
    r(
        "DL3036",
        W,
        "`zypper clean` missing after zypper use.",
        "zypper's cache stays in the layer unless the same RUN ends with `zypper clean` (or `zypper cc`).",
    ),
    r(
        "DL3037",
        W,
        "Specify version with `zypper install -y <package>=<version>`.",
        "Unpinned zypper packages change between builds. Write `zypper install -y curl=8.0.1`.",
    ),
    r(
        "DL3038",
        W,
        "Use the -y switch to avoid manual input `dnf install -y <package>`",
        "dnf (and microdnf) ask for confirmation without `-y` / `--assumeyes`.",
    ),
    r(
        "DL3040",
        W,
        "`dnf clean all` missing after dnf command.",
        "dnf's cache stays in the layer unless the same RUN ends with `dnf clean all` (or `rm -rf /var/cache/dnf`).",
    ),
    r(
        "DL3041",
        W,
        "Specify version with `dnf install -y <package>-<version>`.",
        "Unpinned dnf packages change between builds. Write `dnf install -y httpd-2.4.57`.",
    ),
    r(
        "DL3042",
        W,
        "Avoid use of cache directory with pip. Use `pip install --no-cache-dir <package>`",
        "pip's wheel cache stays in the layer. Add `--no-cache-dir`, set `PIP_NO_CACHE_DIR`, or mount a cache at /root/.cache/pip.",
    ),
    r(
        "DL3043",
        E,
        "`ONBUILD`, `FROM` or `MAINTAINER` triggered from within `ONBUILD` instruction.",
        "ONBUILD cannot trigger ONBUILD, FROM or MAINTAINER; BuildKit refuses them.",
    ),
    r(
        "DL3044",
        E,
        "Do not refer to an environment variable within the same `ENV` statement where it is defined.",
        "`ENV A=1 B=$A` gives B the value A had *before* this ENV, not 1. Split it into two ENV instructions.",
    ),
    r(
        "DL3045",
        W,
        "`COPY` to a relative destination without `WORKDIR` set.",
        "A relative COPY destination depends on the base image's working directory. Set WORKDIR in the stage (or one it builds on) or use an absolute destination.",
    ),
    r(
        "DL3046",
        W,
        "`useradd` without flag `-l` and high UID will result in excessively large Image.",
        "useradd writes the lastlog and faillog entries for the UID, sparse files as large as the UID; layers store them whole. Add `-l` (`--no-log-init`).",
    ),
    r(
        "DL3047",
        I,
        "Avoid use of wget without progress bar. Use `wget --progress=dot:giga <url>`. Or consider using `-q` or `-nv` (shorthands for `--quiet` or `--no-verbose`).",
        "wget's default progress output floods build logs line by line.",
    ),
    r(
        "DL3048",
        S,
        "Invalid label key.",
        "Label keys should be lower-case reverse-DNS or plain words (letters, digits, `.` and `-`), not starting or ending with a separator, without consecutive separators, and not in the reserved `com.docker.`, `io.docker.` and `org.dockerproject.` namespaces.",
    ),
    r(
        "DL3049",
        I,
        "Label `<label>` is missing.",
        "The configuration's `label-schema` lists labels every stage that builds an image must carry.",
    ),
    r(
        "DL3050",
        I,
        "Superfluous label(s) present.",
        "With `strict-labels: true`, labels outside the configuration's `label-schema` are findings.",
    ),
    r(
        "DL3051",
        W,
        "label `<label>` is empty.",
        "A label in the schema has an empty value.",
    ),
    r(
        "DL3052",
        W,
        "Label `<label>` is not a valid URL.",
        "The label's schema type is `url`; its value must be an absolute URL.",
    ),
    r(
        "DL3053",
        W,
        "Label `<label>` is not a valid time format - must conform to RFC3339.",
        "The label's schema type is `rfc3339`; write `2024-01-31T12:00:00Z`.",
    ),
    r(
        "DL3054",
        W,
        "Label `<label>` is not a valid SPDX identifier.",
        "The label's schema type is `spdx`; write a license identifier such as `Apache-2.0` or `MIT OR Apache-2.0`.",
    ),
    r(
        "DL3055",
        W,
        "Label `<label>` is not a valid git hash.",
        "The label's schema type is `hash`; write the full commit id (40 hexadecimal digits, or 64 in a SHA-256 repository).",
    ),
    r(
        "DL3056",
        W,
        "Label `<label>` does not conform to semantic versioning.",
        "The label's schema type is `semver`; write `1.2.3` (pre-release and build suffixes allowed).",
    ),
    r(
        "DL3057",
        Off,
        "`HEALTHCHECK` instruction missing.",
        "Off by default. Turned on, the final image must declare a HEALTHCHECK (its own or `HEALTHCHECK NONE`).",
    ),
    r(
        "DL3058",
        W,
        "Label `<label>` is not a valid email format - must conform to RFC5322.",
        "The label's schema type is `email`; write `team@example.com`.",
    ),
    r(
        "DL3059",
        I,
        "Multiple consecutive `RUN` instructions. Consider consolidation.",
        "Each RUN makes a layer; consecutive simple RUNs are better joined with `&&`. RUNs with different flags (`--mount`, `--network`) are not counted as consecutive.",
    ),
    r(
        "DL3060",
        I,
        "`yarn cache clean` missing after `yarn install` was run.",
        "yarn's cache stays in the layer unless the same RUN ends with `yarn cache clean`, or a cache is mounted.",
    ),
    r(
        "DL3061",
        E,
        "Invalid instruction order. Dockerfile must begin with `FROM`, `ARG` or comment.",
        "Only ARG may come before the first FROM; BuildKit refuses anything else.",
    ),
    r(
        "DL3062",
        W,
        "Pin versions in go. Instead of `go install <package>` use `go install <package>@<version>`",
        "Module-aware `go install` needs a version; `@latest` changes between builds. Write `go install golang.org/x/tools/gopls@v0.16.2`.",
    ),
    r(
        "DL3063",
        W,
        "stage name should not be a reserved word",
        "A stage called `scratch` or `context` shadows a special meaning; BuildKit cannot tell them apart. Rename the stage.",
    ),
    r(
        "DL3064",
        W,
        "Potentially sensitive data should not be used in the `ARG` or `ENV` commands",
        "ARG and ENV values end up in the image's history and configuration. Pass secrets with `RUN --mount=type=secret` instead.",
    ),
    r(
        "DL3065",
        W,
        "Setting `FROM --platform` to predefined `$TARGETPLATFORM` in is redundant as this is the default behavior",
        "A stage is built for the target platform by default; `--platform=$TARGETPLATFORM` changes nothing.",
    ),
    r(
        "DL3066",
        I,
        "Non-numeric user-id may not be resolvable by host system",
        "A user name must resolve through the image's /etc/passwd, which Kubernetes' `runAsNonRoot` cannot check. Write `USER 10001` (or `10001:10001`).",
    ),
    r(
        "DL3067",
        W,
        "Do not copy an entire filesystem from another stage",
        "`COPY --from=stage / /` copies every file of the stage, base image included, which defeats multi-stage builds. Copy the paths you need.",
    ),
    r(
        "DL4000",
        E,
        "MAINTAINER is deprecated",
        "Use `LABEL org.opencontainers.image.authors=\"name <mail>\"`.",
    ),
    r(
        "DL4001",
        W,
        "Either use Wget or Curl but not both",
        "Installing and using both download tools adds size for nothing; pick one per image.",
    ),
    r(
        "DL4003",
        W,
        "Multiple `CMD` instructions found. If you list more than one `CMD` then only the last `CMD` will take effect",
        "Only the last CMD of a stage takes effect.",
    ),
    r(
        "DL4004",
        E,
        "Multiple `ENTRYPOINT` instructions found. If you list more than one `ENTRYPOINT` then only the last `ENTRYPOINT` will take effect",
        "Only the last ENTRYPOINT of a stage takes effect.",
    ),
    r(
        "DL4005",
        W,
        "Use SHELL to change the default shell",
        "Linking /bin/sh to another shell in RUN changes the shell for every later RUN behind the reader's back. Use the SHELL instruction.",
    ),
    r(
        "DL4006",
        W,
        "Set the SHELL option -o pipefail before RUN with a pipe in it. If you are using /bin/sh in an alpine image or if your shell is symlinked to busybox then consider explicitly setting your SHELL to /bin/ash, or disable this check",
        "In `RUN curl … | tar x` the RUN's status is tar's, so a failed download goes unnoticed. Start the script with `set -o pipefail &&` or set `SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]`.",
    ),
];

/// The rule with this id (case-insensitive).
pub fn rule(code: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.code.eq_ignore_ascii_case(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_sorted() {
        for w in RULES.windows(2) {
            assert!(w[0].code < w[1].code, "{} then {}", w[0].code, w[1].code);
        }
        assert!(rule("dl3008").is_some());
        assert!(rule("DL9999").is_none());
    }
}

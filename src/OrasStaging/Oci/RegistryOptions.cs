using System.Net;

namespace OrasStaging.Oci;

/// <summary>How to talk to registries. One shared HttpClient exists per transport-relevant combination.</summary>
public sealed class RegistryOptions
{
    /// <summary>null: loopback hosts use http (as oras does) unless SkipCertificateCheck is set; every other host https.</summary>
    public bool? PlainHttp { get; set; }

    public bool SkipCertificateCheck { get; set; }

    public NetworkCredential? Credential { get; set; }

    /// <summary>
    /// Present no credentials at all: neither <see cref="Credential"/> nor docker's config and its helpers.
    /// Anonymous bearer tokens still work. For tab completion, which must never run a credential helper.
    /// </summary>
    public bool Anonymous { get; set; }

    /// <summary>null: <c>$DOCKER_CONFIG/config.json</c> or <c>~/.docker/config.json</c>.</summary>
    public string? DockerConfigPath { get; set; }

    public int MaximumRetryCount { get; set; } = 5;

    /// <summary>Base of the exponential backoff, in seconds. 0 backs off in tens of milliseconds (tests).</summary>
    public int RetryIntervalSec { get; set; } = 1;

    /// <summary>null: <c>$WITHCACHE_SERVER</c>. Empty string: no cache server.</summary>
    public string? CacheServer { get; set; }

    /// <summary>Connections per blob for a large blob on a server that honours Range (<see cref="RangedFetch"/>); 1: one.</summary>
    public int ConnectionLimit { get; set; } = 4;

    /// <summary>No bytes for this long counts as a dropped connection.</summary>
    public TimeSpan StallTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The registries.conf to read (<c>-RegistryConfigPath</c>); null: <c>$CONTAINERS_REGISTRIES_CONF</c>, the user's,
    /// then the system's file, as <see cref="Mirrors.RegistriesConfLocation"/> chooses. Empty string: read none.
    /// </summary>
    public string? RegistryConfigPath { get; set; }

    /// <summary><c>-Mirror host[:port][/path]</c> entries, tried before the config's mirrors; parsed per pull.</summary>
    public IReadOnlyList<string> Mirrors { get; set; } = Array.Empty<string>();
}

/// <summary>How to choose among an index's manifests and a manifest's layers.</summary>
public sealed class ResolveOptions
{
    /// <summary>os/arch[/variant], e.g. linux/arm64/v8.</summary>
    public string? Platform { get; set; }

    /// <summary>Wildcard pattern on the layer's org.opencontainers.image.title.</summary>
    public string? LayerTitle { get; set; }

    /// <summary>Wildcard pattern on the layer's media type.</summary>
    public string? LayerMediaType { get; set; }

    /// <summary>
    /// The disk type of an index with one disk per type (podman machine-os: qemu, applehv, hyperv; CoreOS: qemu,
    /// metal, azure…). Null: the one <see cref="TargetFormat"/> asks for, else the only one.
    /// </summary>
    public string? DiskType { get; set; }

    /// <summary>io.kubevirt.disk.name of the disk to take from a KubeVirt disk artifact with several.</summary>
    public string? DiskName { get; set; }

    /// <summary>The format that will be written (Install-DiskImageFromOras), which picks a disk type; null: unknown.</summary>
    public DiskImages.DiskImageFormat? TargetFormat { get; set; }

    /// <summary>
    /// Manifest requests only: no checksum-sidecar cross-check (a blob GET). For questions about which digest a tag
    /// names (Get-StagedDiskImage -CheckRemote), where nothing is downloaded and the layer digest is what is compared.
    /// </summary>
    public bool ManifestsOnly { get; set; }

    /// <summary>
    /// No sidecar cross-check while resolving, because the caller runs it (RegistryClient.CrossCheckSidecarAsync)
    /// only once bytes will be pulled: a tag run that skips by digest then costs manifest requests only. Unlike
    /// <see cref="ManifestsOnly"/> the containerDisk layer search still runs, since it decides which layer (and so
    /// which digest) the image is.
    /// </summary>
    public bool DeferSidecar { get; set; }

    /// <summary>
    /// A copy of every choice, for a caller that changes one of them: one place, so an option added later cannot be
    /// lost by a copy that lists fields (a hand-written copy once dropped -DiskType and the containerDisk search).
    /// </summary>
    public ResolveOptions Copy() => (ResolveOptions)MemberwiseClone();
}

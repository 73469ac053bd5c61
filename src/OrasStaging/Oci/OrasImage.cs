namespace OrasStaging;

/// <summary>What a pinned <c>@digest</c> turned out to name.</summary>
public enum PinnedKind
{
    /// <summary>The reference had a tag only.</summary>
    None,

    /// <summary>The digest is a manifest's (the OCI meaning).</summary>
    Manifest,

    /// <summary>The digest is the layer blob's own (as nosi users write it).</summary>
    Blob,
}

/// <summary>One layer of a manifest, as the registry described it.</summary>
public sealed class OrasDescriptor
{
    public string MediaType { get; init; } = string.Empty;

    public string Digest { get; init; } = string.Empty;

    public long Size { get; init; }

    /// <summary>The org.opencontainers.image.title annotation, if any.</summary>
    public string? Title { get; init; }

    public IReadOnlyDictionary<string, string> Annotations { get; init; } = new Dictionary<string, string>();

    public override string ToString() => Title ?? Digest;
}

/// <summary>A resolved oras:// reference: which blob to fetch, how large it is, and where it lives.</summary>
public sealed class OrasImage
{
    /// <summary>The reference as given, canonical and without oras://.</summary>
    public string Reference { get; init; } = string.Empty;

    /// <summary>host[:port] as used on the wire.</summary>
    public string Registry { get; init; } = string.Empty;

    public string Repository { get; init; } = string.Empty;

    public string? Tag { get; init; }

    /// <summary>The digest of the image manifest the layer was chosen from; null when a blob was pinned directly.</summary>
    public string? ManifestDigest { get; init; }

    public PinnedKind PinnedKind { get; init; }

    /// <summary>The chosen layer blob's digest.</summary>
    public string Digest { get; init; } = string.Empty;

    public long Size { get; init; }

    public string? MediaType { get; init; }

    public string? Title { get; init; }

    /// <summary>
    /// The registry URL of the blob (never a signed CDN URL), for display only: downloads derive the URL from
    /// Registry, Repository and Digest, so a hand-made or rehydrated object cannot send credentials elsewhere.
    /// </summary>
    public Uri? BlobUri { get; init; }

    public string? ArtifactType { get; init; }

    public IReadOnlyDictionary<string, string> Annotations { get; init; } = new Dictionary<string, string>();

    public IReadOnlyList<OrasDescriptor> Layers { get; init; } = Array.Empty<OrasDescriptor>();

    /// <summary>os/arch[/variant] of the chosen manifest when it came from an index.</summary>
    public string? Platform { get; init; }

    /// <summary>
    /// The publisher's convention recognised: nosi, containerDisk, podman, diskimage, kubevirt or layer (see
    /// docs/CONVENTIONS.md); null for a blob pinned by digest whose manifest is unknown.
    /// </summary>
    public string? Convention { get; init; }

    /// <summary>The disk's format inside the layer when the convention states it (qcow2, raw, vhdx…).</summary>
    public string? DiskFormat { get; init; }

    /// <summary>The disk type of the index entry taken (podman machine-os: qemu, applehv, hyperv; CoreOS: qemu, metal…).</summary>
    public string? DiskType { get; init; }

    /// <summary>io.kubevirt.disk.name of the disk taken from a KubeVirt disk artifact.</summary>
    public string? DiskName { get; init; }

    /// <summary>The uncompressed size the artifact declares (io.kubevirt.disk.size); the decoded output may not exceed it.</summary>
    public long? DeclaredSize { get; init; }

    /// <summary>containerDisk: the disk's path inside the layer's tar, e.g. disk/disk.qcow2.</summary>
    public string? MemberPath { get; init; }

    /// <summary>
    /// Where a pull of this reference goes, in the order tried: the withcache server, mirrors (-Mirror, then
    /// registries.conf), the origin last. Display only: a download plans again from <see cref="Reference"/>.
    /// </summary>
    public IReadOnlyList<Oci.Mirrors.PullSource> Sources { get; init; } = Array.Empty<Oci.Mirrors.PullSource>();

    public override string ToString() => Reference;
}

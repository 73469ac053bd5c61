namespace OrasStaging.Oci.Conventions;

/// <summary>
/// The names of the publishers' conventions this module recognises, as <see cref="OrasImage.Convention"/> and the
/// receipt spell them. Where each is documented: docs/CONVENTIONS.md.
/// </summary>
public static class DiskConvention
{
    /// <summary>nosi / oras artifacts: application/vnd.nosi.disk-image.layer.v1+&lt;compression&gt;.</summary>
    public const string Nosi = "nosi";

    /// <summary>KubeVirt containerDisk: an image whose tar layers hold the disk as the regular file under disk/.</summary>
    public const string ContainerDisk = "containerDisk";

    /// <summary>podman machine-os: an index whose entries carry the annotation disktype.</summary>
    public const string Podman = "podman";

    /// <summary>CoreOS / Konflux: artifactType application/vnd.diskimage.&lt;format&gt;[.&lt;compression&gt;].</summary>
    public const string DiskImage = "diskimage";

    /// <summary>KubeVirt disk artifacts (VEP 256): layers application/vnd.kubevirt.disk.&lt;format&gt;+&lt;compression&gt;.</summary>
    public const string KubeVirt = "kubevirt";

    /// <summary>Any other artifact: a plain layer of a disk format, chosen by the general layer rule.</summary>
    public const string Layer = "layer";

    /// <summary>podman machine-os: the index-entry annotation that names the disk type.</summary>
    public const string PodmanDiskTypeAnnotation = "disktype";

    /// <summary>CoreOS/Konflux artifact types: application/vnd.diskimage.qcow2, application/vnd.diskimage.raw.gzip…</summary>
    public const string DiskImageTypePrefix = "application/vnd.diskimage.";

    /// <summary>VEP 256 layer media types: application/vnd.kubevirt.disk.raw+zstd…</summary>
    public const string KubeVirtLayerPrefix = "application/vnd.kubevirt.disk.";

    public const string KubeVirtNameAnnotation = "io.kubevirt.disk.name";

    /// <summary>The disk's uncompressed size in bytes (decimal); it also bounds the decoded output.</summary>
    public const string KubeVirtSizeAnnotation = "io.kubevirt.disk.size";

    /// <summary>
    /// The format word of "application/vnd.diskimage.qcow2.gzip" ("qcow2") or of
    /// "application/vnd.kubevirt.disk.raw+zstd" ("raw"); null when <paramref name="type"/> does not start with
    /// <paramref name="prefix"/>.
    /// </summary>
    internal static string? FormatOf(string? type, string prefix)
    {
        if (type is null || !type.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) || type.Length == prefix.Length)
        {
            return null;
        }

        string rest = type[prefix.Length..];
        int end = rest.IndexOfAny(new[] { '.', '+', ';' });
        return (end < 0 ? rest : rest[..end]).ToLowerInvariant();
    }
}

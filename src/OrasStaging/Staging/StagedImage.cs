namespace OrasStaging;

/// <summary>What Install-DiskImageFromOras did for one image: staged it, or skipped it and why.</summary>
public sealed class StagedImage
{
    /// <summary>The image's name in a cijoe config or pipeline input; empty when none was given.</summary>
    public string Name { get; init; } = string.Empty;

    public string Reference { get; init; } = string.Empty;

    public string Path { get; init; } = string.Empty;

    /// <summary>The disk image format written (or found, for a skip): qcow2, raw, vhd…</summary>
    public string Format { get; init; } = string.Empty;

    /// <summary>The layer blob's digest: what the stamp next to the image holds.</summary>
    public string? Digest { get; init; }

    public string? ManifestDigest { get; init; }

    public bool Skipped { get; init; }

    /// <summary>Why nothing was pulled; null when the image was staged.</summary>
    public string? SkipReason { get; init; }

    /// <summary>The disk size the guest sees, in bytes; null when a skip did not learn it.</summary>
    public long? VirtualSize { get; init; }

    /// <summary>The image file's length in bytes.</summary>
    public long? FileSize { get; init; }

    public TimeSpan Duration { get; init; }

    /// <summary>The result of a write (not a skip), to a file or onto a device: the one place both flows build it.</summary>
    internal static StagedImage Staged(Staging.InstallRequest request, Staging.ResolvedLayer layer, DiskImages.DiskImageFormat format,
        long virtualSize, long? fileSize, TimeSpan duration) => new()
    {
        Name = request.Name,
        Reference = request.Reference,
        Path = request.Path,
        Format = DiskImages.DiskImageFormats.Name(format),
        Digest = layer.Digest,
        ManifestDigest = layer.ManifestDigest,
        Skipped = false,
        VirtualSize = virtualSize,
        FileSize = fileSize,
        Duration = duration,
    };

    public override string ToString() => Path;
}

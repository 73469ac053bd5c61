using System.Globalization;

namespace OrasStaging.Oci.Conventions;

/// <summary>
/// The layer chosen from a manifest and what the convention says about it. <see cref="MemberPath"/> is filled in
/// later for a containerDisk, by reading the tar headers (<see cref="ContainerDiskLayers"/>).
/// </summary>
internal sealed record DiskSelection(OrasDescriptor Layer, string Convention)
{
    /// <summary>The disk's format inside the layer when the convention states it (qcow2, raw, vhdx…).</summary>
    public string? DiskFormat { get; init; }

    /// <summary>io.kubevirt.disk.name, or the podman/CoreOS disk type's entry name.</summary>
    public string? DiskName { get; init; }

    /// <summary>The disk type of the index entry (podman, CoreOS).</summary>
    public string? DiskType { get; init; }

    /// <summary>The uncompressed size the artifact declares (io.kubevirt.disk.size); bounds the decoded output.</summary>
    public long? DeclaredSize { get; init; }

    /// <summary>containerDisk: the disk's path inside the layer's tar, e.g. disk/disk.qcow2.</summary>
    public string? MemberPath { get; init; }
}

/// <summary>
/// Which convention a manifest follows, and its disk layer. One place for the order when several could fit:
/// -LayerTitle/-LayerMediaType (the user's word) &gt; KubeVirt disk layers (by -DiskName) &gt; nosi disk-image layers
/// &gt; image tar layers (containerDisk, topmost first) &gt; the largest plain layer (<see cref="Selection.ChooseLayer"/>).
/// podman and CoreOS/Konflux are told by the index entry or the artifact type; their layer is the plain choice.
/// </summary>
internal static class LayerChoice
{
    public static DiskSelection Choose(IReadOnlyList<OrasDescriptor> layers, string? artifactType, ResolveOptions options,
        IndexPick? pick, string reference)
    {
        bool overridden = !string.IsNullOrEmpty(options.LayerTitle) || !string.IsNullOrEmpty(options.LayerMediaType);
        var kubevirt = layers.Where(l => l.MediaType.StartsWith(DiskConvention.KubeVirtLayerPrefix, StringComparison.OrdinalIgnoreCase)).ToList();
        if (!overridden && kubevirt.Count > 0)
        {
            return Describe(ChooseByName(kubevirt, options.DiskName, reference), artifactType, pick);
        }

        if (!string.IsNullOrEmpty(options.DiskName))
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"-DiskName applies to KubeVirt disk artifacts (layers {DiskConvention.KubeVirtLayerPrefix}*); {reference} has none.",
                "Drop -DiskName, or name a layer with -LayerTitle.");
        }

        var chosen = Selection.ChooseLayer(layers, options.LayerTitle, options.LayerMediaType, reference);
        return Describe(chosen, artifactType, pick);
    }

    /// <summary>The convention of a layer already chosen (also for a blob pinned by digest and found in its tag's manifest).</summary>
    public static DiskSelection Describe(OrasDescriptor layer, string? artifactType, IndexPick? pick)
    {
        if (DiskConvention.FormatOf(layer.MediaType, DiskConvention.KubeVirtLayerPrefix) is { } kvFormat)
        {
            return new DiskSelection(layer, DiskConvention.KubeVirt)
            {
                DiskFormat = kvFormat,
                DiskName = layer.Annotations.GetValueOrDefault(DiskConvention.KubeVirtNameAnnotation),
                DeclaredSize = SizeOf(layer.Annotations.GetValueOrDefault(DiskConvention.KubeVirtSizeAnnotation)),
            };
        }

        if (pick?.Convention == DiskConvention.Podman || IsPodmanTitle(layer.Title))
        {
            return new DiskSelection(layer, DiskConvention.Podman)
            {
                DiskType = pick?.DiskType,
                DiskFormat = DiskTypes.FormatOf(pick?.DiskType) ?? PodmanFormatFromTitle(layer.Title),
            };
        }

        string? diskImageType = artifactType is not null && artifactType.StartsWith(DiskConvention.DiskImageTypePrefix, StringComparison.OrdinalIgnoreCase)
            ? artifactType
            : pick?.Entry.ArtifactType?.StartsWith(DiskConvention.DiskImageTypePrefix, StringComparison.OrdinalIgnoreCase) == true ? pick.Entry.ArtifactType : null;
        if (diskImageType is not null || pick?.Convention == DiskConvention.DiskImage)
        {
            return new DiskSelection(layer, DiskConvention.DiskImage)
            {
                DiskType = pick?.DiskType,
                DiskFormat = DiskConvention.FormatOf(diskImageType, DiskConvention.DiskImageTypePrefix) ?? DiskTypes.FormatOf(pick?.DiskType),
            };
        }

        if (layer.MediaType.StartsWith(Selection.NosiLayerPrefix, StringComparison.OrdinalIgnoreCase))
        {
            return new DiskSelection(layer, DiskConvention.Nosi);
        }

        if (Selection.IsTarLayer(layer.MediaType))
        {
            return new DiskSelection(layer, DiskConvention.ContainerDisk);
        }

        return new DiskSelection(layer, DiskConvention.Layer);
    }

    /// <summary>The disk names of KubeVirt disk layers (for completion and messages).</summary>
    public static IReadOnlyList<string> DiskNamesOf(IReadOnlyList<OrasDescriptor> layers) =>
        layers.Where(l => l.MediaType.StartsWith(DiskConvention.KubeVirtLayerPrefix, StringComparison.OrdinalIgnoreCase))
            .Select(NameOf).ToList();

    private static OrasDescriptor ChooseByName(List<OrasDescriptor> disks, string? wanted, string reference)
    {
        string listing = string.Join(", ", disks.Select(NameOf));
        if (!string.IsNullOrWhiteSpace(wanted))
        {
            var match = disks.Where(d => string.Equals(NameOf(d), wanted.Trim(), StringComparison.Ordinal)).ToList();
            return match.Count == 1 ? match[0]
                : throw new OrasStagingException(ErrorCode.NoImageLayer,
                    match.Count == 0 ? $"{reference} has no disk named '{wanted}'; it has: {listing}." : $"{reference} has several disks named '{wanted}'.",
                    "Pick one of the listed names with -DiskName.");
        }

        return disks.Count == 1 ? disks[0]
            : throw new OrasStagingException(ErrorCode.NoImageLayer,
                $"{reference} holds {disks.Count} disks: {listing}.", "Pick one with -DiskName, e.g. -DiskName " + NameOf(disks[0]) + ".");
    }

    private static string NameOf(OrasDescriptor d) =>
        d.Annotations.GetValueOrDefault(DiskConvention.KubeVirtNameAnnotation) ?? d.Title ?? Units.ShortDigest(d.Digest);

    /// <summary>
    /// io.kubevirt.disk.size: a Kubernetes quantity, "10Gi" as VEP 256 writes it (binary SI), or "1073741824",
    /// "10G" (decimal SI). Null when it is not a whole number of bytes that fits, so a malformed annotation is no bound.
    /// </summary>
    internal static long? SizeOf(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }

        text = text.Trim();
        int digits = 0;
        while (digits < text.Length && char.IsAsciiDigit(text[digits]))
        {
            digits++;
        }

        if (digits == 0 || !long.TryParse(text.AsSpan(0, digits), NumberStyles.None, CultureInfo.InvariantCulture, out long number))
        {
            return null;
        }

        long? unit = text[digits..] switch
        {
            "" => 1,
            "Ki" => 1L << 10,
            "Mi" => 1L << 20,
            "Gi" => 1L << 30,
            "Ti" => 1L << 40,
            "Pi" => 1L << 50,
            "Ei" => 1L << 60,
            "k" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "T" => 1_000_000_000_000,
            "P" => 1_000_000_000_000_000,
            "E" => 1_000_000_000_000_000_000,
            _ => null,
        };
        return unit is { } u && number <= long.MaxValue / u ? number * u : null;
    }

    /// <summary>podman-machine.x86_64.qemu.qcow2.zst: podman's naming of its machine-os disk layers.</summary>
    private static bool IsPodmanTitle(string? title) =>
        title is not null && title.StartsWith("podman-machine.", StringComparison.OrdinalIgnoreCase);

    private static string? PodmanFormatFromTitle(string? title)
    {
        if (!IsPodmanTitle(title))
        {
            return null;
        }

        // podman-machine.<arch>.<disktype>.<format>[.<compression>]
        string[] parts = title!.Split('.');
        return parts.Length >= 4 ? DiskTypes.FormatOf(parts[2]) ?? parts[3].ToLowerInvariant() : null;
    }
}

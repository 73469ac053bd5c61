using OrasStaging.DiskImages;

namespace OrasStaging.Oci.Conventions;

/// <summary>The index entry chosen, and what the index said about it.</summary>
internal sealed record IndexPick(PlatformEntry Entry, string? Convention, string? DiskType);

/// <summary>
/// One manifest from an index. An index of one disk per type (podman machine-os: annotation disktype; CoreOS /
/// Konflux: the disk type in platform.os) is chosen by architecture, then by <see cref="DiskTypes.Choose"/>;
/// any other index by platform (<see cref="Selection.ChoosePlatform"/>).
/// </summary>
internal static class IndexChoice
{
    public static IndexPick Choose(IReadOnlyList<PlatformEntry> entries, ResolveOptions options, string hostOs, string hostArch, string reference)
    {
        var podman = entries.Where(e => DiskTypeAnnotation(e) is not null).ToList();
        if (podman.Count > 0)
        {
            return ByDiskType(podman, DiskConvention.Podman, e => DiskTypeAnnotation(e)!, options, hostArch, reference);
        }

        var coreos = entries.Where(e => DiskTypes.IsDiskType(e.Os)).ToList();
        if (coreos.Count > 0)
        {
            return ByDiskType(coreos, DiskConvention.DiskImage, e => e.Os!, options, hostArch, reference);
        }

        // Disk-image artifacts under an ordinary platform (Konflux writes os linux): the target format narrows them
        // by their artifactType, application/vnd.diskimage.<format>[.<compression>]; the platform decides the rest.
        IReadOnlyList<PlatformEntry> candidates = entries;
        if (options.TargetFormat is { } target)
        {
            var sameFormat = entries.Where(e => DiskConvention.FormatOf(e.ArtifactType, DiskConvention.DiskImageTypePrefix) == target.Name()).ToList();
            if (sameFormat.Count > 0 && sameFormat.Count < entries.Count)
            {
                candidates = sameFormat;
            }
        }

        var entry = Selection.ChoosePlatform(candidates, options.Platform, hostOs, hostArch, reference);
        return new IndexPick(entry, null, null);
    }

    /// <summary>The disk types an index offers (for completion and messages); empty for a platform index.</summary>
    public static IReadOnlyList<string> DiskTypesOf(IReadOnlyList<PlatformEntry> entries)
    {
        var podman = entries.Select(DiskTypeAnnotation).Where(t => t is not null).Select(t => t!).ToList();
        if (podman.Count > 0)
        {
            return podman.Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        }

        return entries.Where(e => DiskTypes.IsDiskType(e.Os)).Select(e => e.Os!).Distinct(StringComparer.OrdinalIgnoreCase).ToList();
    }

    private static string? DiskTypeAnnotation(PlatformEntry e) =>
        e.Annotations.TryGetValue(DiskConvention.PodmanDiskTypeAnnotation, out var t) && !string.IsNullOrWhiteSpace(t) ? t.Trim() : null;

    private static IndexPick ByDiskType(List<PlatformEntry> entries, string convention, Func<PlatformEntry, string> typeOf,
        ResolveOptions options, string hostArch, string reference)
    {
        string? wantedType = options.DiskType;
        string? wantedArch = null;
        if (!string.IsNullOrWhiteSpace(options.Platform))
        {
            // os/arch: the os part of such an index is linux (podman) or the disk type itself (CoreOS).
            string[] parts = options.Platform.Trim().Split('/');
            wantedArch = parts.Length >= 2 ? parts[1] : null;
            if (wantedType is null && convention == DiskConvention.DiskImage && DiskTypes.IsDiskType(parts[0]))
            {
                wantedType = parts[0];
            }
        }

        var archs = entries.Select(e => e.Architecture ?? "unknown").Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        string? arch = wantedArch ?? (archs.Count > 1 ? hostArch : null);
        if (arch is not null)
        {
            var sameArch = entries.Where(e => string.Equals(e.Architecture, arch, StringComparison.OrdinalIgnoreCase)).ToList();
            if (sameArch.Count == 0)
            {
                throw new OrasStagingException(ErrorCode.PlatformAmbiguous,
                    $"{reference} has no disk for the architecture {arch}; it has: {string.Join(", ", archs)}.",
                    "Pick one with -Platform linux/<architecture>.");
            }

            entries = sameArch;
        }

        var types = entries.Select(typeOf).Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        DiskImageFormat? target = options.TargetFormat;
        string type = DiskTypes.Choose(types, wantedType, target, reference);
        var entry = entries.First(e => typeOf(e).Equals(type, StringComparison.OrdinalIgnoreCase));
        return new IndexPick(entry, convention, type);
    }
}

using System.Runtime.InteropServices;

namespace OrasStaging.Oci;

/// <summary>An index entry's platform.</summary>
internal sealed record PlatformEntry(string Digest, string MediaType, long Size, string? Os, string? Architecture, string? Variant)
{
    /// <summary>The entry's annotations (podman machine-os puts its <c>disktype</c> here).</summary>
    public IReadOnlyDictionary<string, string> Annotations { get; init; } = new Dictionary<string, string>();

    /// <summary>The entry's artifactType (CoreOS/Konflux: application/vnd.diskimage.&lt;format&gt;…).</summary>
    public string? ArtifactType { get; init; }

    public string Platform => string.Join('/', new[] { Os ?? "unknown", Architecture ?? "unknown", Variant }.Where(s => !string.IsNullOrEmpty(s)));
}

/// <summary>The pure rules that pick one manifest from an index and one layer from a manifest.</summary>
internal static class Selection
{
    public const string TitleAnnotation = "org.opencontainers.image.title";
    public const string NosiLayerPrefix = "application/vnd.nosi.disk-image.layer.v1+";

    private static readonly string[] NeverDiskImageTypes =
    {
        "application/vnd.cncf.helm.*",
        "application/vnd.dev.cosign.*",
        "application/vnd.dev.sigstore.*",
        "application/vnd.in-toto*",
        "application/spdx*",
        "text/spdx*",
        "application/vnd.cyclonedx*",
        "application/vnd.oci.empty.v1+json",
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.nosi.metadata.*",
    };

    /// <summary>Image-layer media types: each layer is a tar (a changeset over the layers below it).</summary>
    private static readonly string[] TarLayerTypes =
    {
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar.zstd",
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
    };

    /// <summary>An image-layer tar: in a KubeVirt containerDisk, the disk is its regular file under disk/.</summary>
    public static bool IsTarLayer(string mediaType) =>
        TarLayerTypes.Contains(mediaType, StringComparer.OrdinalIgnoreCase);

    private static readonly string[] SidecarSuffixes = { ".sha256", ".sha512", ".sig", ".asc", ".pem", ".cert", ".sbom", ".att", ".json" };

    /// <summary>
    /// With a platform asked for: the matching entry (variant optional). Without: the only entry, else the host's
    /// OS and architecture, else PlatformAmbiguous listing what is there.
    /// </summary>
    public static PlatformEntry ChoosePlatform(IReadOnlyList<PlatformEntry> entries, string? wanted, string hostOs, string hostArch, string reference)
    {
        var usable = entries.Where(e => e.Os != "unknown" && e.Architecture != "unknown").ToList();
        if (usable.Count == 0)
        {
            usable = entries.ToList();
        }

        string listing = string.Join(", ", usable.Select(e => e.Platform).Distinct());
        if (!string.IsNullOrWhiteSpace(wanted))
        {
            string[] parts = wanted.Trim().ToLowerInvariant().Split('/');
            if (parts.Length is < 2 or > 3)
            {
                throw new OrasStagingException(ErrorCode.InvalidArgument,
                    $"-Platform '{wanted}' is not os/arch or os/arch/variant.", "Use a value such as linux/amd64 or linux/arm64/v8.");
            }

            var match = usable.Where(e => Eq(e.Os, parts[0]) && Eq(e.Architecture, parts[1])
                && (parts.Length == 2 || Eq(e.Variant, parts[2]))).ToList();
            if (match.Count == 0)
            {
                throw new OrasStagingException(ErrorCode.PlatformAmbiguous,
                    $"{reference} has no manifest for platform {wanted}; it has: {listing}.", "Pick one of the listed platforms with -Platform.");
            }

            return match[0];
        }

        if (usable.Count == 1)
        {
            return usable[0];
        }

        var host = usable.Where(e => Eq(e.Os, hostOs) && Eq(e.Architecture, hostArch)).ToList();
        if (host.Count >= 1)
        {
            return host[0];
        }

        throw new OrasStagingException(ErrorCode.PlatformAmbiguous,
            $"{reference} is an index with several platforms and none matches this host ({hostOs}/{hostArch}): {listing}.",
            "Pick one with -Platform, e.g. -Platform " + (usable.Count > 0 ? usable[0].Platform : "linux/amd64") + ".");
    }

    private static bool Eq(string? a, string b) => string.Equals(a, b, StringComparison.OrdinalIgnoreCase);

    public static string HostOs() =>
        OperatingSystem.IsWindows() ? "windows" : OperatingSystem.IsMacOS() ? "darwin" : OperatingSystem.IsFreeBSD() ? "freebsd" : "linux";

    /// <summary>GOARCH names, as OCI platforms use them.</summary>
    public static string HostArchitecture() => RuntimeInformation.OSArchitecture switch
    {
        Architecture.X64 => "amd64",
        Architecture.Arm64 => "arm64",
        Architecture.X86 => "386",
        Architecture.Arm => "arm",
        Architecture.S390x => "s390x",
        Architecture.Ppc64le => "ppc64le",
        Architecture.LoongArch64 => "loong64",
        var other => other.ToString().ToLowerInvariant(),
    };

    public static bool IsSidecarTitle(string? title) =>
        title is not null && SidecarSuffixes.Any(s => title.EndsWith(s, StringComparison.OrdinalIgnoreCase));

    public static bool IsNeverDiskImage(string mediaType) =>
        NeverDiskImageTypes.Any(p => Wildcard.IsMatch(p, mediaType));

    /// <summary>
    /// -LayerTitle / -LayerMediaType (wildcards) decide when given. Otherwise drop media types that are never
    /// disk images, prefer nosi disk-image layers, drop sidecar titles, take the largest.
    /// </summary>
    public static OrasDescriptor ChooseLayer(IReadOnlyList<OrasDescriptor> layers, string? titlePattern, string? mediaTypePattern, string reference)
    {
        IEnumerable<OrasDescriptor> candidates = layers;
        bool overridden = !string.IsNullOrEmpty(titlePattern) || !string.IsNullOrEmpty(mediaTypePattern);
        if (overridden)
        {
            if (!string.IsNullOrEmpty(titlePattern))
            {
                candidates = candidates.Where(l => l.Title is not null && Wildcard.IsMatch(titlePattern, l.Title));
            }

            if (!string.IsNullOrEmpty(mediaTypePattern))
            {
                candidates = candidates.Where(l => Wildcard.IsMatch(mediaTypePattern, l.MediaType));
            }
        }
        else
        {
            candidates = candidates.Where(l => !IsNeverDiskImage(l.MediaType));
            var nosi = candidates.Where(l => l.MediaType.StartsWith(NosiLayerPrefix, StringComparison.OrdinalIgnoreCase)).ToList();
            if (nosi.Count > 0)
            {
                candidates = nosi;
            }

            candidates = candidates.Where(l => !IsSidecarTitle(l.Title));

            // A container image (a containerDisk): the topmost layer is the one whose disk/ wins; its size says
            // nothing (a base layer below can be larger).
            var list = candidates.ToList();
            if (list.Count > 0 && list.All(l => IsTarLayer(l.MediaType)))
            {
                return list[^1];
            }

            candidates = list;
        }

        var chosen = candidates.OrderByDescending(l => l.Size).FirstOrDefault();
        if (chosen is null)
        {
            string listing = layers.Count == 0 ? "no layers" :
                string.Join(", ", layers.Select(l => $"{l.Title ?? Units.ShortDigest(l.Digest)} ({l.MediaType})"));
            throw new OrasStagingException(ErrorCode.NoImageLayer,
                overridden
                    ? $"No layer of {reference} matches -LayerTitle/-LayerMediaType; it has {listing}."
                    : $"{reference} has no layer that could be a disk image; it has {listing}.",
                overridden ? "Adjust -LayerTitle or -LayerMediaType." : "Check the reference; name a layer with -LayerTitle or -LayerMediaType if you are sure.");
        }

        return chosen;
    }

    /// <summary>A safe file name from a title, or null (separators, .., drive, invalid characters).</summary>
    public static string? SafeFileName(string? title)
    {
        if (string.IsNullOrWhiteSpace(title) || title is "." or "..")
        {
            return null;
        }

        if (title.Contains('/') || title.Contains('\\') || title.Contains("..") || title.Contains(':')
            || title.IndexOfAny("<>\"|?*".ToCharArray()) >= 0 || title.Any(char.IsControl)
            || title.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || title != title.Trim() || title.EndsWith('.'))
        {
            return null;
        }

        // Names Windows reserves for devices, with or without an extension.
        string stem = title.Split('.')[0].TrimEnd();
        if (ReservedNames.Contains(stem))
        {
            return null;
        }

        return title;
    }

    private static readonly HashSet<string> ReservedNames = new(StringComparer.OrdinalIgnoreCase)
    {
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
        "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    };
}

using OrasStaging.DiskImages;

namespace OrasStaging.Oci.Conventions;

/// <summary>
/// Disk types, as podman machine-os (annotation disktype) and CoreOS/Konflux (platform.os of index entries) name
/// the entries of one index, and the rule that picks one: -DiskType when given, else the one the target format
/// asks for, else the only one, else an error that lists them.
/// </summary>
internal static class DiskTypes
{
    /// <summary>The disk format each known type is published in (podman: qemu, applehv, hyperv; CoreOS: the rest).</summary>
    private static readonly Dictionary<string, string> Formats = new(StringComparer.OrdinalIgnoreCase)
    {
        ["qemu"] = "qcow2",
        ["applehv"] = "raw",
        ["hyperv"] = "vhdx",
        ["metal"] = "raw",
        ["metal4k"] = "raw",
        ["azure"] = "vhd",
        ["openstack"] = "qcow2",
        ["kubevirt"] = "qcow2",
        ["nutanix"] = "qcow2",
        ["ibmcloud"] = "qcow2",
        ["vmware"] = "ova",
        ["aws"] = "vmdk",
        ["gcp"] = "tar.gz",
        ["virtualbox"] = "ova",
    };

    /// <summary>For a target format, the disk types to prefer, best first.</summary>
    private static readonly Dictionary<DiskImageFormat, string[]> Preferred = new()
    {
        [DiskImageFormat.Qcow2] = new[] { "qemu", "openstack", "kubevirt" },
        [DiskImageFormat.Raw] = new[] { "applehv", "metal" },
        [DiskImageFormat.Vhd] = new[] { "azure", "hyperv" },
        [DiskImageFormat.Vhdx] = new[] { "hyperv" },
        [DiskImageFormat.Vmdk] = new[] { "aws" },
    };

    /// <summary>The format a disk type is published in, or null when the type is not one of the known ones.</summary>
    public static string? FormatOf(string? diskType) =>
        diskType is not null && Formats.TryGetValue(diskType, out var f) ? f : null;

    /// <summary>True for the disk types CoreOS puts into platform.os (never an operating system such as linux).</summary>
    public static bool IsDiskType(string? os) => os is not null && Formats.ContainsKey(os);

    /// <summary>
    /// One of <paramref name="types"/> (distinct, as the index has them): <paramref name="wanted"/> when given
    /// (PlatformAmbiguous listing the types when absent, as for -Platform), else the type <paramref name="target"/> prefers, else the
    /// only one; otherwise PlatformAmbiguous listing them.
    /// </summary>
    public static string Choose(IReadOnlyCollection<string> types, string? wanted, DiskImageFormat? target, string reference)
    {
        string listing = string.Join(", ", types.Select(t => FormatOf(t) is { } f ? $"{t} ({f})" : t));
        if (!string.IsNullOrWhiteSpace(wanted))
        {
            return types.FirstOrDefault(t => t.Equals(wanted.Trim(), StringComparison.OrdinalIgnoreCase))
                ?? throw new OrasStagingException(ErrorCode.PlatformAmbiguous,
                    $"{reference} has no disk type '{wanted}'; it has: {listing}.", "Pick one of the listed types with -DiskType.");
        }

        if (target is { } format && Preferred.TryGetValue(format, out var preferred)
            && preferred.FirstOrDefault(p => types.Contains(p, StringComparer.OrdinalIgnoreCase)) is { } match)
        {
            return types.First(t => t.Equals(match, StringComparison.OrdinalIgnoreCase));
        }

        if (types.Count == 1)
        {
            return types.First();
        }

        throw new OrasStagingException(ErrorCode.PlatformAmbiguous,
            $"{reference} holds one disk per type and none matches {(target is { } t ? "the target format " + t.Name() : "a target format")}: {listing}.",
            "Pick one with -DiskType, e.g. -DiskType " + types.First() + ", or give a target format that one of them has.");
    }
}

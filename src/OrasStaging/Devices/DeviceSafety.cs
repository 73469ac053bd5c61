using System.Diagnostics;

namespace OrasStaging.Devices;

/// <summary>
/// The refusals that keep a flash from destroying the wrong disk, checked before anything is written. Codes:
/// in use (mounted, LVM/MD/device-mapper holder, swap, the running root) and read-only are
/// <see cref="ErrorCode.DestinationNotWritable"/>; an image larger than the device is <see cref="ErrorCode.InsufficientSpace"/>.
/// The exclusive open in <see cref="DeviceWriter"/> (O_EXCL, EBUSY) is a second guard for whatever this misses.
/// </summary>
public static class DeviceSafety
{
    private const string UnmountFirst = "Unmount every file system on the device (and stop anything using it), then try again; check that this is the disk you mean.";

    /// <summary>Every check that needs no image: in use, read-only. Throws the first failure.</summary>
    public static void ThrowIfInUse(BlockDevice device)
    {
        if (device.IsReadOnly)
        {
            throw new OrasStagingException(ErrorCode.DestinationNotWritable,
                $"{device.NodePath} is read-only (a write-protect switch, or the kernel marked it so). Nothing was written.",
                "Unlock the card or stick, or choose another device.");
        }

        if (OperatingSystem.IsLinux())
        {
            ThrowIfInUseLinux(device);
        }
        else if (OperatingSystem.IsMacOS())
        {
            ThrowIfMountedMac(device);
        }

        // Windows: a write to a sector inside a mounted volume fails with access denied unless the volume is locked
        // and dismounted first; that refusal surfaces from the writer as DestinationNotWritable.
    }

    /// <summary>Fails with <see cref="ErrorCode.InsufficientSpace"/> when <paramref name="imageLength"/> bytes do not fit on the device.</summary>
    public static void ThrowIfTooSmall(BlockDevice device, long imageLength)
    {
        if (imageLength > device.Size)
        {
            throw TooSmall(device, imageLength);
        }
    }

    /// <summary>Known before the first byte (declared size, qcow2 virtual size, a file's or a raw layer's length).</summary>
    internal static OrasStagingException TooSmall(BlockDevice device, long imageLength) =>
        new(ErrorCode.InsufficientSpace,
            $"The image ({Units.Bytes(imageLength)}, {imageLength} bytes) is larger than {device.NodePath} ({Units.Bytes(device.Size)}, {device.Size} bytes). Nothing was written.",
            "Choose a larger device.");

    /// <summary>
    /// Learnt while writing (an image whose size nothing declared): the decoded stream goes on past the device's
    /// end. Nothing past the end is attempted; <see cref="DeviceFlash.Unbootable"/> adds what the device now holds.
    /// </summary>
    internal static OrasStagingException Overrun(BlockDevice device) =>
        new(ErrorCode.InsufficientSpace,
            $"The image is larger than {device.NodePath} ({Units.Bytes(device.Size)}, {device.Size} bytes): its data goes on past the end of the device, and nothing past the end was written.",
            "Choose a device at least as large as the image.");

    /// <summary>
    /// Linux and macOS: a caller who may not write the node is refused before the prompt and before anything is
    /// downloaded (access(2), which opens nothing, so udev sees no write-close). Windows tells at the open.
    /// </summary>
    public static void ThrowIfNoPermission(BlockDevice device)
    {
        if ((OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())
            && LinuxNative.Access(device.NodePath, LinuxNative.WOk) != 0
            && LinuxNative.LastError is LinuxNative.EAcces or LinuxNative.EPerm)
        {
            throw PermissionDenied(device.NodePath);
        }
    }

    /// <summary>Permission to open the device is root's, or the disk group's on most distributions.</summary>
    internal static OrasStagingException PermissionDenied(string nodePath) =>
        new(ErrorCode.DestinationNotWritable,
            $"Permission denied opening {nodePath} for writing. Writing a disk needs root, or membership of the group that owns the device (usually 'disk'). Nothing was written.",
            OperatingSystem.IsWindows() ? "Run PowerShell as Administrator." : "Run as root (sudo pwsh), or add your user to the 'disk' group and log in again.");

    internal static OrasStagingException Busy(string nodePath) =>
        new(ErrorCode.DestinationNotWritable,
            $"{nodePath} is in use: the kernel refused an exclusive open (a mounted file system, a swap area, LVM, MD, or another program holds it). Nothing was written.",
            UnmountFirst);

    private static void ThrowIfInUseLinux(BlockDevice device)
    {
        // The numbers that count: the device itself and, for a whole disk, every partition on it.
        var numbers = new HashSet<string>(StringComparer.Ordinal) { device.DeviceNumber };
        foreach (var p in device.Partitions)
        {
            numbers.Add(p.DeviceNumber);
        }

        string NameOf(string number) =>
            number == device.DeviceNumber ? device.NodePath : device.Partitions.First(p => p.DeviceNumber == number).NodePath;

        if (NodeStatus.Get("/", followLinks: true) is { } root && numbers.Contains(root.FileSystemNumber))
        {
            throw new OrasStagingException(ErrorCode.DestinationNotWritable,
                $"{NameOf(root.FileSystemNumber)} holds the running system's root file system; {device.NodePath} will not be overwritten.",
                "Choose another device; this one is the disk the system runs from.");
        }

        foreach (var (number, mountPoint, source) in ReadMounts())
        {
            string? hit = numbers.Contains(number) ? number
                : source.StartsWith("/dev/", StringComparison.Ordinal) && Status(source) is { FileType: NodeStatus.BlockDevice } s && numbers.Contains(s.DeviceNumber) ? s.DeviceNumber
                : null;
            if (hit is not null)
            {
                throw new OrasStagingException(ErrorCode.DestinationNotWritable,
                    $"{NameOf(hit)} is mounted on '{mountPoint}'; {device.NodePath} will not be overwritten while a file system on it is in use. Nothing was written.",
                    UnmountFirst);
            }
        }

        foreach (var (sys, label) in SysFolders(device))
        {
            foreach (var holder in Directory.Exists(Path.Combine(sys, "holders")) ? Directory.EnumerateFileSystemEntries(Path.Combine(sys, "holders")) : Enumerable.Empty<string>())
            {
                string name = Path.GetFileName(holder);
                throw new OrasStagingException(ErrorCode.DestinationNotWritable,
                    $"{label} is part of {HolderKind(name)} ({name}); {device.NodePath} will not be overwritten while it is active. Nothing was written.",
                    "Deactivate it first (vgchange -an, mdadm --stop, cryptsetup close or dmsetup remove), then try again.");
            }
        }

        foreach (var swap in ReadSwaps())
        {
            if (Status(swap) is { } s && (s.FileType == NodeStatus.BlockDevice ? numbers.Contains(s.DeviceNumber) : numbers.Contains(s.FileSystemNumber)))
            {
                throw new OrasStagingException(ErrorCode.DestinationNotWritable,
                    $"{device.NodePath} holds an active swap area ({swap}). Nothing was written.",
                    $"Turn it off first (swapoff {swap}), then try again.");
            }
        }
    }

    private static IEnumerable<(string Sys, string Label)> SysFolders(BlockDevice device)
    {
        if (device.SysPath is null)
        {
            yield break;
        }

        yield return (device.SysPath, device.NodePath);
        foreach (var p in device.Partitions)
        {
            yield return (Path.Combine(device.SysPath, p.Name), p.NodePath);
        }
    }

    private static string HolderKind(string holder)
    {
        if (holder.StartsWith("md", StringComparison.Ordinal))
        {
            return "an MD RAID array";
        }

        string? uuid = BlockDevice.ReadSys($"/sys/block/{holder}/dm", "uuid");
        return uuid switch
        {
            not null when uuid.StartsWith("LVM-", StringComparison.Ordinal) => "an LVM volume group",
            not null when uuid.StartsWith("CRYPT-", StringComparison.Ordinal) => "an encrypted (dm-crypt) volume",
            _ when holder.StartsWith("dm-", StringComparison.Ordinal) => "a device-mapper device",
            _ => "another block device",
        };
    }

    /// <summary>(major:minor, mount point, source) of each line of /proc/self/mountinfo (proc(5)).</summary>
    internal static IEnumerable<(string Number, string MountPoint, string Source)> ReadMounts()
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines("/proc/self/mountinfo");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            yield break;
        }

        foreach (var line in lines)
        {
            var f = line.Split(' ');
            int dash = Array.IndexOf(f, "-");
            if (f.Length < 5 || dash < 0 || dash + 2 >= f.Length)
            {
                continue;
            }

            yield return (f[2], Unescape(f[4]), Unescape(f[dash + 2]));
        }
    }

    private static IEnumerable<string> ReadSwaps()
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines("/proc/swaps");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            yield break;
        }

        foreach (var line in lines.Skip(1))
        {
            var f = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (f.Length > 0)
            {
                yield return Unescape(f[0]);
            }
        }
    }

    // The kernel writes space, tab, newline and backslash in paths as \040, \011, \012, \134.
    private static string Unescape(string s) =>
        System.Text.RegularExpressions.Regex.Replace(s, @"\\([0-7]{3})", m => ((char)Convert.ToInt32(m.Groups[1].Value, 8)).ToString());

    private static NodeStatus? Status(string path)
    {
        try
        {
            return NodeStatus.Get(path, followLinks: true);
        }
        catch (OrasStagingException)
        {
            return null;
        }
    }

    private static void ThrowIfMountedMac(BlockDevice device)
    {
        // /dev/rdisk4 and /dev/disk4 are one disk; its slices are disk4s1, disk4s2. mount(8) lists what is mounted.
        string disk = Path.GetFileName(device.NodePath).TrimStart('r');
        string output;
        try
        {
            using var p = Process.Start(new ProcessStartInfo("/sbin/mount") { RedirectStandardOutput = true, UseShellExecute = false })!;
            output = p.StandardOutput.ReadToEnd();
            p.WaitForExit(5000);
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or IOException or InvalidOperationException)
        {
            return;
        }

        foreach (var line in output.Split('\n'))
        {
            string source = line.Split(' ')[0];
            if (source == "/dev/" + disk || source.StartsWith("/dev/" + disk + "s", StringComparison.Ordinal))
            {
                throw new OrasStagingException(ErrorCode.DestinationNotWritable,
                    $"{source} is mounted ({line.Trim()}); {device.NodePath} will not be overwritten. Nothing was written.",
                    $"Unmount it first (diskutil unmountDisk /dev/{disk}), then try again.");
            }
        }
    }
}

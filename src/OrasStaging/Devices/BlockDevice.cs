using System.Globalization;

namespace OrasStaging.Devices;

/// <summary>A partition of a <see cref="BlockDevice"/>: kernel name ("sdb1"), device number, start and size in bytes.</summary>
public sealed record DevicePartition(string Name, string NodePath, string DeviceNumber, long Start, long Size);

/// <summary>A file system found on a device or one of its partitions (from /dev/disk/by-label or blkid).</summary>
public sealed record DeviceFileSystem(string NodePath, string? Type, string? Label);

/// <summary>
/// A block device, described for the confirmation prompt and the safety checks: size, model, partitions, file
/// systems. Built only from what the path is (a block special file, a physical drive, a raw disk), never from its name.
/// </summary>
public sealed partial class BlockDevice
{
    internal BlockDevice(string path, string nodePath, long size, int logicalBlockSize)
    {
        Path = path;
        NodePath = nodePath;
        Size = size;
        LogicalBlockSize = logicalBlockSize;
        Name = System.IO.Path.GetFileName(nodePath);
    }

    /// <summary>The path as the user gave it (may be a link such as /dev/disk/by-id/…).</summary>
    public string Path { get; }

    /// <summary>The device node the path leads to (/dev/sdb, \\.\PhysicalDrive2, /dev/rdisk4).</summary>
    public string NodePath { get; }

    /// <summary>Kernel name ("sdb", "loop3", "nvme0n1").</summary>
    public string Name { get; }

    /// <summary>"major:minor" on Linux and macOS; empty on Windows.</summary>
    public string DeviceNumber { get; internal init; } = string.Empty;

    public long Size { get; }

    /// <summary>The smallest unit the device writes; every direct write is a multiple of it at a multiple of it.</summary>
    public int LogicalBlockSize { get; }

    public int PhysicalBlockSize { get; internal init; }

    /// <summary>Vendor and model as the kernel reports them ("ATA Samsung SSD 870", "loop: /srv/a.img"), or null.</summary>
    public string? Model { get; internal init; }

    public bool IsReadOnly { get; internal init; }

    public bool IsRemovable { get; internal init; }

    /// <summary>True when the path is itself a partition (/dev/sdb1), not a whole disk.</summary>
    public bool IsPartition { get; internal init; }

    public IReadOnlyList<DevicePartition> Partitions { get; internal init; } = Array.Empty<DevicePartition>();

    public IReadOnlyList<DeviceFileSystem> FileSystems { get; internal init; } = Array.Empty<DeviceFileSystem>();

    /// <summary>The sysfs folder of the device (Linux), for the safety checks.</summary>
    internal string? SysPath { get; init; }

    /// <summary>
    /// One paragraph for the ShouldProcess prompt: "/dev/loop3 (64 MiB, loop: /tmp/a.img), 1 partition: loop3p1 (ext4 'boot')".
    /// </summary>
    public string Summary
    {
        get
        {
            var parts = new List<string> { Units.Bytes(Size) };
            if (!string.IsNullOrEmpty(Model))
            {
                parts.Add(Model!);
            }

            if (IsRemovable)
            {
                parts.Add("removable");
            }

            if (IsPartition)
            {
                parts.Add("a partition");
            }

            string text = $"{NodePath} ({string.Join(", ", parts)})";
            if (Partitions.Count > 0)
            {
                text += $", {Partitions.Count} partition{(Partitions.Count == 1 ? string.Empty : "s")}: "
                    + string.Join(", ", Partitions.Select(p => $"{p.Name} {Units.Bytes(p.Size)}{FileSystemText(p.NodePath)}"));
            }
            else if (FileSystemText(NodePath) is { Length: > 0 } fs)
            {
                text += ", no partition table," + fs; // a file system on the whole device
            }

            return text;
        }
    }

    public override string ToString() => Summary;

    private string FileSystemText(string node)
    {
        var fs = FileSystems.FirstOrDefault(f => f.NodePath == node);
        if (fs is null)
        {
            return string.Empty;
        }

        return " (" + string.Join(" ", new[] { fs.Type, fs.Label is null ? null : $"'{fs.Label}'" }.Where(s => s is not null)) + ")";
    }

    /// <summary>
    /// Describes <paramref name="path"/> when it is a block device (a raw disk on macOS, a physical drive on Windows);
    /// false for anything else, including a path that does not exist. Never opens the device for writing.
    /// </summary>
    public static bool TryDescribe(string path, out BlockDevice? device)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        device = OperatingSystem.IsLinux() ? DescribeLinux(path)
            : OperatingSystem.IsWindows() ? DescribeWindows(path)
            : OperatingSystem.IsMacOS() ? DescribeMac(path)
            : null;
        return device is not null;
    }

    /// <summary>As <see cref="TryDescribe"/>, but a path that is not a block device is <see cref="ErrorCode.InvalidArgument"/>.</summary>
    public static BlockDevice Describe(string path)
    {
        if (TryDescribe(path, out var device))
        {
            return device!;
        }

        var type = OperatingSystem.IsWindows() ? TargetType.OtherSpecial : TargetKind.Of(path);
        throw new OrasStagingException(ErrorCode.InvalidArgument,
            type == TargetType.Missing ? $"'{path}' does not exist; a block device was expected." : $"'{path}' is {TargetKind.Describe(type)}, not a block device.",
            "Give the device node of a whole disk, such as /dev/sdb, /dev/mmcblk0, \\\\.\\PhysicalDrive2 or /dev/rdisk4.");
    }

    private static BlockDevice? DescribeWindows(string path)
    {
        using var handle = WindowsNative.OpenForQuery(path);
        if (handle.IsInvalid || !WindowsNative.DeviceIoControl(handle, WindowsNative.IoctlDiskGetLengthInfo, IntPtr.Zero, 0, out long length, 8, out _, IntPtr.Zero))
        {
            return null;
        }

        return new BlockDevice(path, path, length, 512) { PhysicalBlockSize = 512 };
    }

    private static BlockDevice? DescribeMac(string path)
    {
        var status = NodeStatus.Get(path, followLinks: true);
        if (status is not { FileType: NodeStatus.BlockDevice or NodeStatus.CharDevice })
        {
            return null;
        }

        int fd = MacNative.Open(path, MacNative.ORdOnly | MacNative.OCloExec);
        if (fd < 0)
        {
            return null;
        }

        try
        {
            if (MacNative.IoctlUInt64(fd, MacNative.DkiocGetBlockSize, out ulong blockSize) != 0
                || MacNative.IoctlUInt64(fd, MacNative.DkiocGetBlockCount, out ulong blockCount) != 0)
            {
                return null; // a character device that is not a disk (a tty, /dev/null)
            }

            return new BlockDevice(path, path, checked((long)(blockSize * blockCount)), (int)blockSize)
            {
                DeviceNumber = status.Value.DeviceNumber,
                PhysicalBlockSize = (int)blockSize,
            };
        }
        finally
        {
            MacNative.Close(fd);
        }
    }

    internal static string? ReadSys(string folder, string file)
    {
        try
        {
            string text = File.ReadAllText(System.IO.Path.Combine(folder, file)).Trim();
            return text.Length == 0 ? null : text;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    internal static long ReadSysLong(string folder, string file) =>
        long.TryParse(ReadSys(folder, file), NumberStyles.Integer, CultureInfo.InvariantCulture, out long v) ? v : 0;
}

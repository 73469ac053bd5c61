namespace OrasStaging.Devices;

/// <summary>What a destination path is. Only <see cref="Missing"/> and <see cref="RegularFile"/> may be written the file way.</summary>
public enum TargetType
{
    Missing,
    RegularFile,
    BlockDevice,
    Folder,
    CharacterDevice,
    Fifo,
    Socket,

    /// <summary>Anything else that exists and is not a regular file: a symbolic link to nothing, a Windows device path.</summary>
    OtherSpecial,
}

/// <summary>
/// Classifies a destination by what it is (its file type), never by its name. The staging flow writes beside the
/// target and renames over it; that is only right for a missing target or a regular file. Renaming over a device
/// node replaces the node with a file (the disk is never written), and deleting or truncating a FIFO or a character
/// device is never what the user meant, so every other kind is refused or sent to the device path.
/// </summary>
public static class TargetKind
{
    /// <summary>The kind of <paramref name="path"/>. Symbolic links are followed (/dev/disk/by-id/… names a disk).</summary>
    public static TargetType Of(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (OperatingSystem.IsWindows())
        {
            return OfWindows(path);
        }

        var status = NodeStatus.Get(path, followLinks: true);
        if (status is null)
        {
            // Following failed; a link that exists but leads nowhere is not "missing": the rename would replace the link.
            return NodeStatus.Get(path, followLinks: false) is null ? TargetType.Missing : TargetType.OtherSpecial;
        }

        return status.Value.FileType switch
        {
            NodeStatus.Regular => TargetType.RegularFile,
            NodeStatus.BlockDevice => TargetType.BlockDevice,
            NodeStatus.CharDevice when OperatingSystem.IsMacOS() && BlockDevice.TryDescribe(path, out _) => TargetType.BlockDevice, // /dev/rdiskN
            NodeStatus.Directory => TargetType.Folder,
            NodeStatus.CharDevice => TargetType.CharacterDevice,
            NodeStatus.Fifo => TargetType.Fifo,
            NodeStatus.Socket => TargetType.Socket,
            _ => TargetType.OtherSpecial,
        };
    }

    /// <summary>True when the file flow (write beside, rename over) may handle <paramref name="type"/>.</summary>
    public static bool IsFileTarget(TargetType type) => type is TargetType.Missing or TargetType.RegularFile;

    /// <summary>"a FIFO", "a character device", for messages.</summary>
    public static string Describe(TargetType type) => type switch
    {
        TargetType.Missing => "missing",
        TargetType.RegularFile => "a regular file",
        TargetType.BlockDevice => "a block device",
        TargetType.Folder => "a folder",
        TargetType.CharacterDevice => "a character device",
        TargetType.Fifo => "a FIFO (named pipe)",
        TargetType.Socket => "a socket",
        _ => "a special file",
    };

    /// <summary>
    /// Fails with <see cref="ErrorCode.InvalidArgument"/> unless <paramref name="path"/> is missing or a regular file.
    /// The integrator calls this before any rename, delete or truncate of a destination (block devices go to
    /// <see cref="DeviceWriter"/> before this is reached). <paramref name="role"/> names the path ("the destination").
    /// </summary>
    public static TargetType ThrowUnlessFileTarget(string path, string role)
    {
        var type = Of(path);
        if (!IsFileTarget(type))
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"'{path}' is {Describe(type)}; {role} must be a regular file or a path that does not exist yet. Nothing was written.",
                type == TargetType.BlockDevice
                    ? "To write onto the disk itself, give the device to a command that flashes devices."
                    : "Choose a file path for the destination.");
        }

        return type;
    }

    private static TargetType OfWindows(string path)
    {
        // \\.\ and \\?\GLOBALROOT name devices, not files; a physical drive is told by asking it for its length.
        if (path.StartsWith(@"\\.\", StringComparison.Ordinal) || path.StartsWith(@"\\?\GLOBALROOT", StringComparison.OrdinalIgnoreCase))
        {
            return BlockDevice.TryDescribe(path, out _) ? TargetType.BlockDevice : TargetType.OtherSpecial;
        }

        if (Directory.Exists(path))
        {
            return TargetType.Folder;
        }

        return File.Exists(path) ? TargetType.RegularFile : TargetType.Missing;
    }
}

namespace OrasStaging.Tests.Devices;

/// <summary>
/// A loop device over a file filled with 0xFF, made by the test and detached in Dispose. Tests only ever touch
/// the devices they made; nothing is written into /dev except through the device node.
/// </summary>
internal sealed class LoopDevice : IDisposable
{
    private readonly string _folder;

    private LoopDevice(string folder, string backingFile, string node)
    {
        _folder = folder;
        BackingFile = backingFile;
        Node = node;
    }

    public string BackingFile { get; }

    /// <summary>/dev/loopN.</summary>
    public string Node { get; }

    /// <summary>A new loop device of <paramref name="size"/> bytes of 0xFF; <paramref name="prepare"/> may edit the file first (a partition table).</summary>
    public static LoopDevice Create(long size, Action<FileStream>? prepare = null, bool partitions = false, bool readOnly = false)
    {
        string folder = Path.Combine(Path.GetTempPath(), "orasstaging-dev-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        string file = Path.Combine(folder, "disk.img");
        using (var fs = new FileStream(file, FileMode.CreateNew))
        {
            var ff = new byte[1 << 20];
            Array.Fill(ff, (byte)0xFF);
            for (long at = 0; at < size; at += ff.Length)
            {
                fs.Write(ff, 0, (int)Math.Min(ff.Length, size - at));
            }

            prepare?.Invoke(fs);
        }

        var args = new List<string> { "-f", "--show" };
        if (partitions)
        {
            args.Add("-P");
        }

        if (readOnly)
        {
            args.Add("-r");
        }

        args.Add(file);
        var (code, output) = Tools.Run(Tools.Require("losetup"), args.ToArray());
        if (code != 0)
        {
            Directory.Delete(folder, true);
            throw new InvalidOperationException("losetup -f failed: " + output);
        }

        return new LoopDevice(folder, file, output.Trim());
    }

    public string MakeFolder(string name)
    {
        string path = Path.Combine(_folder, name);
        Directory.CreateDirectory(path);
        return path;
    }

    /// <summary>The backing file's bytes: what the "disk" holds.</summary>
    public byte[] ReadAll() => File.ReadAllBytes(BackingFile);

    public void Dispose()
    {
        Tools.Run(Tools.Require("losetup"), "-d", Node);
        try
        {
            Directory.Delete(_folder, true);
        }
        catch (IOException)
        {
            // a mount point left behind by a failed umount: leave it rather than hide the first failure
        }
    }
}

internal static class Tools
{
    public static string? Which(string name)
    {
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator)
            .Concat(new[] { "/usr/sbin", "/sbin", "/usr/bin", "/bin" });
        return dirs.Where(d => d.Length > 0).Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);
    }

    public static string Require(string name) => Which(name) ?? throw new InvalidOperationException(name + " is not installed.");

    public static (int ExitCode, string Output) Run(string file, params string[] args) =>
        OrasStaging.Tests.DiskImages.ImageTools.Run(file, args);

    public static void Check(string name, params string[] args)
    {
        var (code, output) = Run(Require(name), args);
        if (code != 0)
        {
            throw new InvalidOperationException($"{name} {string.Join(' ', args)} failed ({code}): {output}");
        }
    }

    /// <summary>Why loop-device tests cannot run here, or null when they can.</summary>
    public static string? LoopDevicesUnavailable(params string[] tools)
    {
        if (!OperatingSystem.IsLinux())
        {
            return "loop devices are Linux only";
        }

        if (Environment.UserName != "root" && !IsRoot())
        {
            return "loop-device tests need root (losetup, mount)";
        }

        if (!File.Exists("/dev/loop-control"))
        {
            return "/dev/loop-control is missing (no loop driver, or a container without it)";
        }

        foreach (var tool in tools.Prepend("losetup"))
        {
            if (Which(tool) is null)
            {
                return $"{tool} is not installed";
            }
        }

        return null;
    }

    private static readonly Lazy<string?> PartitionProbe = new(ProbePartitions);

    /// <summary>Why partitions on loop devices cannot be tested here (a kernel built without partition tables), or null.</summary>
    public static string? LoopPartitionsUnavailable(params string[] tools) => LoopDevicesUnavailable(tools) ?? PartitionProbe.Value;

    // Asks the kernel itself: a tiny loop device with one MBR partition, scanned with -P.
    private static string? ProbePartitions()
    {
        try
        {
            using var loop = LoopDevice.Create(2L << 20, fs => WriteMbr(fs, 2048, 1024), partitions: true);
            string sys = $"/sys/block/{Path.GetFileName(loop.Node)}/{Path.GetFileName(loop.Node)}p1";
            for (int i = 0; i < 20 && !Directory.Exists(sys); i++)
            {
                Thread.Sleep(50);
            }

            return Directory.Exists(sys) ? null : "this kernel does not read partition tables on loop devices (CONFIG_MSDOS_PARTITION is off)";
        }
        catch (InvalidOperationException ex)
        {
            return "cannot probe loop partitions: " + ex.Message;
        }
    }

    /// <summary>An MBR with one Linux partition (start and length in 512-byte sectors); the other three entries empty.</summary>
    public static void WriteMbr(FileStream fs, uint start, uint sectors)
    {
        var mbr = new byte[512];
        fs.Position = 0;
        fs.ReadExactly(mbr);
        Array.Clear(mbr, 446, 64);
        mbr[446 + 4] = 0x83;
        BitConverter.TryWriteBytes(mbr.AsSpan(446 + 8), start);
        BitConverter.TryWriteBytes(mbr.AsSpan(446 + 12), sectors);
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        fs.Position = 0;
        fs.Write(mbr);
    }

    private static bool IsRoot() => Run("/usr/bin/id", "-u").Output.Trim() == "0";
}

/// <summary>A fact that needs partitions on loop devices; skipped with the reason where the kernel cannot.</summary>
internal sealed class LoopPartitionFactAttribute : FactAttribute
{
    public LoopPartitionFactAttribute(params string[] tools)
    {
        if (Tools.LoopPartitionsUnavailable(tools) is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>A fact that runs only where loop devices can be made; otherwise skipped with the reason.</summary>
internal sealed class LoopDeviceFactAttribute : FactAttribute
{
    public LoopDeviceFactAttribute(params string[] tools)
    {
        if (Tools.LoopDevicesUnavailable(tools) is { } reason)
        {
            Skip = reason;
        }
    }
}

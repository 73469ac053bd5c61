using System.Diagnostics;

namespace OrasStaging.Devices;

/// <summary>Linux: everything comes from /sys/dev/block/MAJ:MIN, reached from the node's device number.</summary>
public sealed partial class BlockDevice
{
    private static BlockDevice? DescribeLinux(string path)
    {
        var status = NodeStatus.Get(path, followLinks: true);
        if (status is not { FileType: NodeStatus.BlockDevice } node)
        {
            return null;
        }

        string link = $"/sys/dev/block/{node.DeviceNumber}";
        string sys = new DirectoryInfo(link).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? link;
        string name = ReadUevent(sys, "DEVNAME") ?? System.IO.Path.GetFileName(sys);
        bool isPartition = File.Exists(System.IO.Path.Combine(sys, "partition"));
        string disk = isPartition ? System.IO.Path.GetDirectoryName(sys)! : sys; // queue/ and device/ live on the disk

        int logical = (int)ReadSysLong(disk, "queue/logical_block_size");
        int physical = (int)ReadSysLong(disk, "queue/physical_block_size");
        var partitions = isPartition ? new List<DevicePartition>() : ListPartitions(sys);
        string nodePath = "/dev/" + name;
        var nodes = new List<string> { nodePath };
        nodes.AddRange(partitions.Select(p => p.NodePath));

        return new BlockDevice(path, nodePath, ReadSysLong(sys, "size") * 512, logical > 0 ? logical : 512)
        {
            DeviceNumber = node.DeviceNumber,
            PhysicalBlockSize = physical > 0 ? physical : 512,
            Model = ModelOf(disk),
            IsReadOnly = ReadSys(sys, "ro") == "1",
            IsRemovable = ReadSys(disk, "removable") == "1",
            IsPartition = isPartition,
            Partitions = partitions,
            FileSystems = FindFileSystems(nodes),
            SysPath = sys,
        };
    }

    private static List<DevicePartition> ListPartitions(string sys)
    {
        var list = new List<DevicePartition>();
        foreach (var dir in Directory.EnumerateDirectories(sys))
        {
            if (!File.Exists(System.IO.Path.Combine(dir, "partition")))
            {
                continue;
            }

            string name = ReadUevent(dir, "DEVNAME") ?? System.IO.Path.GetFileName(dir);
            list.Add(new DevicePartition(name, "/dev/" + name, ReadSys(dir, "dev") ?? string.Empty,
                ReadSysLong(dir, "start") * 512, ReadSysLong(dir, "size") * 512));
        }

        list.Sort((a, b) => a.Start.CompareTo(b.Start));
        return list;
    }

    private static string? ModelOf(string disk)
    {
        if (ReadSys(disk, "loop/backing_file") is { } backing)
        {
            return "loop: " + backing;
        }

        string device = System.IO.Path.Combine(disk, "device");
        string? model = ReadSys(device, "model") ?? ReadSys(device, "name"); // name: SD/MMC cards
        string? vendor = ReadSys(device, "vendor");
        if (vendor is not null && vendor.StartsWith("0x", StringComparison.Ordinal))
        {
            vendor = null; // virtio and PCI report a numeric vendor id, which tells the user nothing
        }

        string text = string.Join(" ", new[] { vendor, model }.Where(s => s is not null));
        return text.Length == 0 ? null : text;
    }

    private static string? ReadUevent(string folder, string key)
    {
        string? text = ReadSys(folder, "uevent");
        if (text is null)
        {
            return null;
        }

        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith(key + "=", StringComparison.Ordinal))
            {
                return line[(key.Length + 1)..].Trim();
            }
        }

        return null;
    }

    /// <summary>
    /// Labels from the udev links in /dev/disk/by-label (matched by device number, not by name), then blkid for
    /// types and for systems without udev (containers). Both are optional: a missing tool only means fewer details.
    /// </summary>
    private static List<DeviceFileSystem> FindFileSystems(List<string> nodes)
    {
        var found = new Dictionary<string, DeviceFileSystem>(StringComparer.Ordinal);
        var numbers = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var n in nodes)
        {
            if (Safe(() => NodeStatus.Get(n, true)) is { FileType: NodeStatus.BlockDevice } s)
            {
                numbers[s.DeviceNumber] = n;
            }
        }

        const string byLabel = "/dev/disk/by-label";
        if (Directory.Exists(byLabel))
        {
            foreach (var entry in Directory.EnumerateFileSystemEntries(byLabel))
            {
                if (Safe(() => NodeStatus.Get(entry, true)) is { FileType: NodeStatus.BlockDevice } s && numbers.TryGetValue(s.DeviceNumber, out var n))
                {
                    found[n] = new DeviceFileSystem(n, null, UnescapeUdev(System.IO.Path.GetFileName(entry)));
                }
            }
        }

        foreach (var n in nodes)
        {
            if (Blkid(n) is { } probe)
            {
                probe.TryGetValue("TYPE", out var type);
                probe.TryGetValue("LABEL", out var label);
                found[n] = new DeviceFileSystem(n, type, label ?? (found.TryGetValue(n, out var old) ? old.Label : null));
            }
        }

        return nodes.Where(found.ContainsKey).Select(n => found[n]).ToList();
    }

    private static Dictionary<string, string>? Blkid(string node)
    {
        string? exe = new[] { "/usr/sbin/blkid", "/sbin/blkid", "/usr/bin/blkid" }.FirstOrDefault(File.Exists);
        if (exe is null)
        {
            return null;
        }

        try
        {
            var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { "-p", "-o", "export", node })
            {
                psi.ArgumentList.Add(a);
            }

            using var p = Process.Start(psi)!;
            string output = p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(5000))
            {
                p.Kill();
                return null;
            }

            if (p.ExitCode != 0)
            {
                return null; // 2: nothing recognised on it
            }

            var values = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var line in output.Split('\n'))
            {
                int eq = line.IndexOf('=');
                if (eq > 0)
                {
                    values[line[..eq]] = line[(eq + 1)..].Trim();
                }
            }

            return values.ContainsKey("TYPE") || values.ContainsKey("LABEL") ? values : null;
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or IOException or InvalidOperationException)
        {
            return null;
        }
    }

    // udev escapes unsafe characters in link names as \xNN.
    private static string UnescapeUdev(string name) =>
        System.Text.RegularExpressions.Regex.Replace(name, @"\\x([0-9a-fA-F]{2})",
            m => ((char)Convert.ToInt32(m.Groups[1].Value, 16)).ToString());

    private static T? Safe<T>(Func<T?> f) where T : struct
    {
        try
        {
            return f();
        }
        catch (OrasStagingException)
        {
            return null;
        }
    }
}

using OrasStaging.Devices;

namespace OrasStaging.Tests.Devices;

public sealed class DeviceDetectionTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "orasstaging-kind-" + Guid.NewGuid().ToString("N"));

    public DeviceDetectionTests() => Directory.CreateDirectory(_folder);

    public void Dispose() => Directory.Delete(_folder, true);

    [Fact]
    public void RegularFileMissingFolderAndDanglingLinkAreToldApart()
    {
        string file = Path.Combine(_folder, "loop0"); // a device's name, but a regular file
        File.WriteAllBytes(file, new byte[] { 1 });
        string link = Path.Combine(_folder, "dangling");
        File.CreateSymbolicLink(link, Path.Combine(_folder, "nowhere"));

        Assert.Equal(TargetType.RegularFile, TargetKind.Of(file));
        Assert.Equal(TargetType.Missing, TargetKind.Of(Path.Combine(_folder, "absent")));
        Assert.Equal(TargetType.Missing, TargetKind.Of(Path.Combine(file, "below-a-file")));
        Assert.Equal(TargetType.Folder, TargetKind.Of(_folder));
        Assert.Equal(TargetType.OtherSpecial, TargetKind.Of(link));
        Assert.False(BlockDevice.TryDescribe(file, out _));
        Assert.Equal(ErrorCode.InvalidArgument, Assert.Throws<OrasStagingException>(() => BlockDevice.Describe(file)).Code);
        Assert.Equal(TargetType.RegularFile, TargetKind.ThrowUnlessFileTarget(file, "the destination"));
    }

    [Fact]
    public void CharacterDeviceFifoAndFolderAreRefusedAsFileTargets()
    {
        string fifo = Path.Combine(_folder, "pipe");
        Tools.Check("mkfifo", fifo);

        string socketPath = Path.Combine(_folder, "sock");
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        socket.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(socketPath));

        Assert.Equal(TargetType.CharacterDevice, TargetKind.Of("/dev/null"));
        Assert.Equal(TargetType.Fifo, TargetKind.Of(fifo));
        Assert.Equal(TargetType.Socket, TargetKind.Of(socketPath));
        foreach (var path in new[] { "/dev/null", fifo, socketPath, _folder })
        {
            var ex = Assert.Throws<OrasStagingException>(() => TargetKind.ThrowUnlessFileTarget(path, "the destination"));
            Assert.Equal(ErrorCode.InvalidArgument, ex.Code);
            Assert.Contains("Nothing was written", ex.Message);
            Assert.False(BlockDevice.TryDescribe(path, out _));
        }

        Assert.Equal(TargetType.Fifo, TargetKind.Of(fifo)); // still a FIFO: nothing renamed over it
    }

    [LoopDeviceFact]
    public void LoopDeviceIsABlockDeviceByWhatItIsAndIsDescribed()
    {
        using var loop = LoopDevice.Create(24L << 20);
        // A link with a file's name still leads to the device; the name never decides.
        string link = Path.Combine(Path.GetDirectoryName(loop.BackingFile)!, "image.raw");
        File.CreateSymbolicLink(link, loop.Node);

        Assert.Equal(TargetType.BlockDevice, TargetKind.Of(loop.Node));
        Assert.Equal(TargetType.BlockDevice, TargetKind.Of(link));
        Assert.Equal(TargetType.RegularFile, TargetKind.Of(loop.BackingFile));
        Assert.Throws<OrasStagingException>(() => TargetKind.ThrowUnlessFileTarget(loop.Node, "the destination"));

        var device = BlockDevice.Describe(link);
        Assert.Equal(loop.Node, device.NodePath);
        Assert.Equal(link, device.Path);
        Assert.Equal(24L << 20, device.Size);
        Assert.Equal(512, device.LogicalBlockSize);
        Assert.False(device.IsPartition);
        Assert.Empty(device.Partitions);
        Assert.Contains(loop.BackingFile, device.Model);
        Assert.Contains(loop.Node, device.Summary);
        Assert.Contains("24.0 MiB", device.Summary);
    }

    [LoopPartitionFact("mkfs.ext4")]
    public void PartitionsAndFileSystemLabelsAreListed()
    {
        using var loop = LoopDevice.Create(32L << 20, WriteMbr, partitions: true);
        string part = loop.Node + "p1";
        WaitFor(part);
        Tools.Check("mkfs.ext4", "-q", "-F", "-L", "bootfs", part);

        var device = BlockDevice.Describe(loop.Node);
        var p = Assert.Single(device.Partitions);
        Assert.Equal(part, p.NodePath);
        Assert.Equal(1L << 20, p.Start);
        Assert.Equal(16L << 20, p.Size);
        var fs = Assert.Single(device.FileSystems);
        Assert.Equal(part, fs.NodePath);
        Assert.Equal("ext4", fs.Type);
        Assert.Equal("bootfs", fs.Label);
        Assert.Contains("'bootfs'", device.Summary);

        var partition = BlockDevice.Describe(part);
        Assert.True(partition.IsPartition);
        Assert.Equal(16L << 20, partition.Size);
    }

    /// <summary>One Linux partition at 1 MiB, 16 MiB long.</summary>
    internal static void WriteMbr(FileStream fs) => Tools.WriteMbr(fs, 2048, 32768);

    internal static void WaitFor(string node)
    {
        for (int i = 0; i < 50 && !File.Exists(node); i++)
        {
            Thread.Sleep(100);
        }

        Assert.True(File.Exists(node), node + " did not appear");
    }
}

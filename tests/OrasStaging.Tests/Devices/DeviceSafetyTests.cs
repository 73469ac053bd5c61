using OrasStaging.Devices;

namespace OrasStaging.Tests.Devices;

public sealed class DeviceSafetyTests
{
    [LoopDeviceFact("mkfs.ext4", "mount", "umount")]
    public void MountedDeviceIsRefusedBeforeAnythingIsWritten()
    {
        using var loop = LoopDevice.Create(32L << 20);
        Tools.Check("mkfs.ext4", "-q", "-F", "-L", "mounted", loop.Node);
        var fs = Assert.Single(BlockDevice.Describe(loop.Node).FileSystems); // blkid, no udev needed
        Assert.Equal(("ext4", "mounted"), (fs.Type, fs.Label));
        Assert.Contains("(ext4 'mounted')", BlockDevice.Describe(loop.Node).Summary);
        string mountPoint = loop.MakeFolder("mnt");
        Tools.Check("mount", loop.Node, mountPoint);
        try
        {
            var device = BlockDevice.Describe(loop.Node);
            var ex = Assert.Throws<OrasStagingException>(() => DeviceWriter.Open(device, 1 << 20));
            Assert.Equal(ErrorCode.DestinationNotWritable, ex.Code);
            Assert.Contains("mounted on '" + mountPoint + "'", ex.Message);

            // The second guard, for what the checks might miss: the kernel refuses an exclusive open.
            var busy = Assert.Throws<OrasStagingException>(() => DeviceHandle.Open(device, write: true, direct: true));
            Assert.Equal(ErrorCode.DestinationNotWritable, busy.Code);
            Assert.Contains("in use", busy.Message);
        }
        finally
        {
            Tools.Check("umount", mountPoint);
        }

        // Unmounted, the same device is accepted: the refusal was about the mount.
        using var writer = DeviceWriter.Open(BlockDevice.Describe(loop.Node), 1 << 20);
    }

    [LoopPartitionFact("mkfs.ext4", "mount", "umount")]
    public void MountedPartitionRefusesTheWholeDisk()
    {
        using var loop = LoopDevice.Create(32L << 20, DeviceDetectionTests.WriteMbr, partitions: true);
        string part = loop.Node + "p1";
        DeviceDetectionTests.WaitFor(part);
        Tools.Check("mkfs.ext4", "-q", "-F", part);
        string mountPoint = loop.MakeFolder("mnt");
        Tools.Check("mount", part, mountPoint);
        try
        {
            var ex = Assert.Throws<OrasStagingException>(() => DeviceSafety.ThrowIfInUse(BlockDevice.Describe(loop.Node)));
            Assert.Equal(ErrorCode.DestinationNotWritable, ex.Code);
            Assert.Contains(part + " is mounted", ex.Message);
        }
        finally
        {
            Tools.Check("umount", mountPoint);
        }
    }

    [LoopDeviceFact]
    public void ImageLargerThanTheDeviceIsRefusedUpFrontAndWhileStreaming()
    {
        using var loop = LoopDevice.Create(4L << 20);
        var device = BlockDevice.Describe(loop.Node);

        var upFront = Assert.Throws<OrasStagingException>(() => DeviceWriter.Open(device, device.Size + 1));
        Assert.Equal(ErrorCode.InsufficientSpace, upFront.Code);

        // Length unknown (a compressed stream): the append that would pass the end fails, before it is written.
        using (var writer = DeviceWriter.Open(device, null))
        {
            var data = new byte[1 << 20];
            Array.Fill(data, (byte)0x11);
            for (int i = 0; i < 4; i++)
            {
                writer.Append(data, data.Length);
            }

            var ex = Assert.Throws<OrasStagingException>(() => writer.Append(data, 1));
            Assert.Equal(ErrorCode.InsufficientSpace, ex.Code);
            Assert.Contains("larger than " + loop.Node, ex.Message);
            writer.Flush();
        }

        Assert.True(loop.ReadAll().AsSpan().IndexOfAnyExcept((byte)0x11) < 0, "the device does not hold what was appended before the refusal");
    }

    [LoopDeviceFact]
    public void OverrunSaysWhatTheDeviceHoldsOnlyOnceBytesReachedIt()
    {
        using var loop = LoopDevice.Create(4L << 20);
        var device = BlockDevice.Describe(loop.Node);
        using var writer = DeviceWriter.Open(device, null, new DeviceWriterOptions { BufferSize = 1 << 20 });
        var data = new byte[768 << 10];
        Array.Fill(data, (byte)0x22);

        writer.Append(data, data.Length);
        Assert.False(writer.Touched); // still in the 1 MiB buffer
        var early = DeviceFlash.Unbootable(device, DeviceSafety.Overrun(device), writer.Touched);
        Assert.Equal(ErrorCode.InsufficientSpace, early.Code);
        Assert.Contains("Nothing was written to " + loop.Node, early.Message);
        Assert.DoesNotContain("must not be booted", early.Message);

        for (int i = 0; i < 4; i++)
        {
            writer.Append(data, data.Length);
        }

        Assert.True(writer.Touched);
        var overrun = Assert.Throws<OrasStagingException>(() => writer.Append(data, data.Length));
        Assert.Contains("image is larger than " + loop.Node, overrun.Message);
        Assert.Contains("nothing past the end was written", overrun.Message);
        var late = DeviceFlash.Unbootable(device, overrun, writer.Touched);
        Assert.Equal(ErrorCode.InsufficientSpace, late.Code);
        Assert.Contains(loop.Node + " now holds a partial image and must not be booted", late.Message);
    }

    [LoopDeviceFact]
    public void ReadOnlyDeviceIsRefused()
    {
        using var loop = LoopDevice.Create(4L << 20, readOnly: true);
        var device = BlockDevice.Describe(loop.Node);
        Assert.True(device.IsReadOnly);
        var ex = Assert.Throws<OrasStagingException>(() => DeviceWriter.Open(device, 512));
        Assert.Equal(ErrorCode.DestinationNotWritable, ex.Code);
        Assert.Contains("read-only", ex.Message);
    }

    [LoopDeviceFact("mkswap", "swapon", "swapoff")]
    public void ActiveSwapIsRefused()
    {
        using var loop = LoopDevice.Create(16L << 20);
        Tools.Check("mkswap", loop.Node);
        Tools.Check("swapon", "--priority", "-2", loop.Node); // lowest priority: the system keeps using its own swap first
        try
        {
            var ex = Assert.Throws<OrasStagingException>(() => DeviceWriter.Open(BlockDevice.Describe(loop.Node), null));
            Assert.Equal(ErrorCode.DestinationNotWritable, ex.Code);
            Assert.Contains("swap", ex.Message);
        }
        finally
        {
            Tools.Check("swapoff", loop.Node);
        }
    }

    [Fact]
    public void TheDeviceHoldingTheRunningRootIsRefused()
    {
        // Reads only metadata (stat, /sys); the root disk is never opened.
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        var root = NodeStatus.Get("/", followLinks: true)!.Value;
        string sys = $"/sys/dev/block/{root.FileSystemNumber}";
        string? name = Directory.Exists(sys) ? BlockDevice.ReadSys(sys, "uevent")?.Split('\n').FirstOrDefault(l => l.StartsWith("DEVNAME="))?[8..] : null;
        if (name is null || !File.Exists("/dev/" + name))
        {
            return; // the root is not on a block device here (overlay, tmpfs, a container)
        }

        var device = BlockDevice.Describe("/dev/" + name);
        var ex = Assert.Throws<OrasStagingException>(() => DeviceSafety.ThrowIfInUse(device));
        Assert.Equal(ErrorCode.DestinationNotWritable, ex.Code);
        Assert.Contains("running system's root", ex.Message);
    }
}

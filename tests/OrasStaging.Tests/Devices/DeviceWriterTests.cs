using System.Security.Cryptography;
using OrasStaging.Devices;

namespace OrasStaging.Tests.Devices;

public sealed class DeviceWriterTests
{
    private const long DeviceSize = 32L << 20;

    /// <summary>
    /// 20 MiB + 1234 bytes (the last block is partial): data, a 4 MiB zero run (long enough for BLKZEROOUT),
    /// data with short zero runs inside, a 1 MiB + 512 zero run, and a data tail.
    /// </summary>
    private static byte[] Image()
    {
        var image = new byte[(20 << 20) + 1234];
        var rng = new Random(13);
        rng.NextBytes(image.AsSpan(0, 3 << 20));
        rng.NextBytes(image.AsSpan(7 << 20, 6 << 20));
        Array.Clear(image, (8 << 20) + 100, 70_000);
        Array.Clear(image, (10 << 20) + 4096, 512);
        rng.NextBytes(image.AsSpan((14 << 20) + 512));
        return image;
    }

    private static void AssertDeviceHolds(LoopDevice loop, byte[] image)
    {
        byte[] disk = loop.ReadAll();
        Assert.Equal(DeviceSize, disk.Length);
        Assert.True(disk.AsSpan(0, image.Length).SequenceEqual(image), "the device does not start with the image");
        int firstNonFf = disk.AsSpan(image.Length).IndexOfAnyExcept((byte)0xFF);
        Assert.True(firstNonFf < 0, $"the device was changed beyond the image, at {image.Length + firstNonFf}");
    }

    private static void AppendInChunks(DeviceWriter writer, byte[] image, int from, int to, int chunk)
    {
        for (int at = from; at < to; at += chunk)
        {
            writer.Append(image.AsSpan(at, Math.Min(chunk, to - at)));
        }
    }

    [LoopDeviceFact]
    public void ImageIsWrittenWithItsZerosAndTheRestOfTheDeviceIsUntouched()
    {
        using var loop = LoopDevice.Create(DeviceSize);
        byte[] image = Image();
        var sink = new RecordingSink();
        using (var writer = DeviceWriter.Open(BlockDevice.Describe(loop.Node), image.Length, new DeviceWriterOptions { Sink = sink }))
        {
            Assert.True(writer.DirectIo);
            AppendInChunks(writer, image, 0, image.Length, 1 << 20);
            Assert.Equal((image.Length, image.Length), writer.Finish(image.Length, image.Length));
            Assert.True(writer.ZeroedOut >= 4L << 20, $"BLKZEROOUT zeroed only {writer.ZeroedOut} bytes");
        }

        AssertDeviceHolds(loop, image);
        Assert.Contains(sink.Progress, p => p.Activity.StartsWith("Flushing", StringComparison.Ordinal) && p.Completed == image.Length);
    }

    [LoopDeviceFact]
    public void BufferedWritesWithoutZeroOutGiveTheSameResult()
    {
        using var loop = LoopDevice.Create(DeviceSize);
        byte[] image = Image();
        var options = new DeviceWriterOptions { DirectIo = false, ZeroOut = false, BufferSize = 1 << 20 };
        using (var writer = DeviceWriter.Open(BlockDevice.Describe(loop.Node), image.Length, options))
        {
            Assert.False(writer.DirectIo);
            AppendInChunks(writer, image, 0, image.Length, 300_000); // odd sizes
            writer.Finish(image.Length, image.Length);
            Assert.Equal(0, writer.ZeroedOut);
        }

        AssertDeviceHolds(loop, image);
    }

    [LoopDeviceFact]
    public void ShortDecodedStreamIsZeroFilledToTheVirtualSize()
    {
        using var loop = LoopDevice.Create(DeviceSize);
        byte[] image = Image();
        using (var writer = DeviceWriter.Open(BlockDevice.Describe(loop.Node), null))
        {
            AppendInChunks(writer, image, 0, 5 << 20, 1 << 20);
            writer.Finish(5 << 20, image.Length);
        }

        var expected = new byte[image.Length];
        image.AsSpan(0, 5 << 20).CopyTo(expected);
        AssertDeviceHolds(loop, expected);
    }

    [LoopDeviceFact]
    public void ResumingAtAnOffsetGivesAnIdenticalResult()
    {
        using var loop = LoopDevice.Create(DeviceSize);
        byte[] image = Image();
        var device = BlockDevice.Describe(loop.Node);

        // A first connection reaches 9 MiB + 77 and drops; the process goes away after a flush.
        int dropped = (9 << 20) + 77;
        using (var first = DeviceWriter.Open(device, image.Length))
        {
            AppendInChunks(first, image, 0, dropped, 1 << 20);
            Assert.Equal(dropped, first.Position);
            first.Flush();
        }

        // A second writer continues at the same offset; within it a second drop rewinds to an earlier, odd offset.
        using (var second = DeviceWriter.Open(device, image.Length))
        {
            second.Seek(dropped);
            AppendInChunks(second, image, dropped, 15 << 20, 1 << 20);
            int rewind = (12 << 20) + 4099;
            second.Seek(rewind);
            Assert.Equal(rewind, second.Position);
            AppendInChunks(second, image, rewind, image.Length, 777_777);
            second.Finish(image.Length, image.Length);
        }

        AssertDeviceHolds(loop, image);
    }

    [LoopDeviceFact]
    public async Task VerifyCatchesAByteChangedOnTheDevice()
    {
        using var loop = LoopDevice.Create(DeviceSize);
        byte[] image = Image();
        string digest = "sha256:" + Convert.ToHexString(SHA256.HashData(image)).ToLowerInvariant();
        using var writer = DeviceWriter.Open(BlockDevice.Describe(loop.Node), image.Length);
        AppendInChunks(writer, image, 0, image.Length, 1 << 20);
        writer.Finish(image.Length, image.Length);

        Assert.Equal(digest, await writer.VerifyAsync(image.Length, digest));

        // Change one byte inside the zero run, through the device node, and flush it to the device.
        using (var fs = new FileStream(loop.Node, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            fs.Position = (4L << 20) + 12345;
            fs.WriteByte(0x01);
            fs.Flush(flushToDisk: true);
        }

        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => writer.VerifyAsync(image.Length, digest));
        Assert.Equal(ErrorCode.DigestMismatch, ex.Code);
        Assert.Contains("must not be booted", ex.Message);
    }

    private sealed class RecordingSink : IOperationSink
    {
        public List<ProgressInfo> Progress { get; } = new();

        void IOperationSink.Progress(ProgressInfo info)
        {
            lock (Progress)
            {
                Progress.Add(info);
            }
        }

        public void Verbose(string message) { }

        public void Warning(string message) { }
    }
}

using System.Diagnostics;
using OrasStaging.DiskImages;
using OrasStaging.DiskImages.Qcow2;

namespace OrasStaging.Tests.DiskImages;

/// <summary>Fixtures made by qemu-img from generated raw images; qemu-img is the oracle only.</summary>
internal static class Qcow2Fixtures
{
    /// <summary>
    /// A raw disk with the shapes a reader must get right: incompressible and compressible runs, zero gaps of
    /// many sizes, data at unaligned offsets, and a non-zero last sector.
    /// </summary>
    public static string Raw(TempDir dir, long size, int seed = 1, string name = "in.raw")
    {
        var data = new byte[size];
        var rng = new Random(seed);
        long at = 0;
        while (at < size)
        {
            int len = (int)Math.Min(size - at, rng.Next(1, 300_000));
            switch (rng.Next(4))
            {
                case 0:
                    rng.NextBytes(data.AsSpan((int)at, len));
                    break;
                case 1:
                    for (int i = 0; i < len; i++)
                    {
                        data[at + i] = (byte)"qcow2 compressible text "[(int)((at + i) % 24)];
                    }

                    break;
                default:
                    break; // zeros
            }

            at += len;
        }

        data[^1] = 0x5A;
        string path = dir.File(name);
        File.WriteAllBytes(path, data);
        return path;
    }

    public static string Qemu(params string[] args)
    {
        var (code, output) = ImageTools.Run(ImageTools.QemuImg, args);
        Assert.True(code == 0, $"qemu-img {string.Join(' ', args)}: exit {code}: {output}");
        return output;
    }

    public static string Convert(TempDir dir, string raw, string name, params string[] options)
    {
        string path = dir.File(name);
        Qemu(["convert", "-f", "raw", "-O", "qcow2", .. options, raw, path]);
        return path;
    }

    /// <summary>The guest content as qemu sees it.</summary>
    public static byte[] OracleRaw(TempDir dir, string qcow2)
    {
        string raw = dir.File(Path.GetFileName(qcow2) + ".oracle.raw");
        Qemu("convert", "-f", "qcow2", "-O", "raw", qcow2, raw);
        return File.ReadAllBytes(raw);
    }

    /// <summary>The guest content as our reader sees it, through the same path a writer would use.</summary>
    public static byte[] OurRaw(string qcow2)
    {
        using var image = Qcow2Image.Open(qcow2);
        using var reader = new Qcow2Reader(image);
        using var target = new MemoryTarget();
        reader.CopyTo(target);
        return target.Bytes.ToArray();
    }

    public static void AssertSameBytes(byte[] expected, byte[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        int diff = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(diff == expected.Length, $"first difference at byte {diff}");
    }
}

/// <summary>An <see cref="IImageTarget"/> that keeps what it is given, checking the chunking contract.</summary>
internal sealed class MemoryTarget : IImageTarget
{
    public MemoryStream Bytes { get; } = new();
    public bool Finished { get; private set; }

    public void Append(byte[] buffer, int count)
    {
        Assert.False(Finished, "Append after a partial chunk: only the last chunk may be short");
        Finished = count % Qcow2Layout.ClusterSize != 0;
        Bytes.Write(buffer, 0, count);
    }

    public (long VirtualSize, long FileSize) Finish(long decodedLength, long virtualSize) => (virtualSize, Bytes.Length);

    public void Dispose()
    {
    }
}

public class Qcow2ReaderTests
{
    public static TheoryData<string, string[]> Layouts => new()
    {
        { "plain", [] },
        { "zlib", ["-c"] },
        { "zstd", ["-c", "-o", "compression_type=zstd"] },
        { "c512", ["-o", "cluster_size=512"] },
        { "c512-zlib", ["-c", "-o", "cluster_size=512"] },
        { "c4k", ["-o", "cluster_size=4096"] },
        { "c4k-zstd", ["-c", "-o", "cluster_size=4096,compression_type=zstd"] },
        { "c2m", ["-o", "cluster_size=2M"] },
        { "c2m-zlib", ["-c", "-o", "cluster_size=2M"] },
        { "v2", ["-o", "compat=0.10"] },
        { "v2-zlib", ["-c", "-o", "compat=0.10"] },
        { "extended-l2", ["-o", "extended_l2=on,cluster_size=128k"] },
        { "refcount1", ["-o", "refcount_bits=1"] },
    };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void ReadsLikeQemu(string name, string[] options)
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, (9L << 20) + 1536, seed: name.GetHashCode() & 0xFFFF); // odd size: not a cluster multiple
        string qcow2 = Qcow2Fixtures.Convert(dir, raw, name + ".qcow2", options);
        byte[] expected = File.ReadAllBytes(raw);
        Qcow2Fixtures.AssertSameBytes(expected, Qcow2Fixtures.OracleRaw(dir, qcow2));
        Qcow2Fixtures.AssertSameBytes(expected, Qcow2Fixtures.OurRaw(qcow2));
    }

    [Fact]
    public void RandomReadsAndExtentsAgree()
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, 6L << 20, seed: 7);
        string qcow2 = Qcow2Fixtures.Convert(dir, raw, "r.qcow2", "-c", "-o", "cluster_size=4096");
        byte[] expected = File.ReadAllBytes(raw);
        using var image = Qcow2Image.Open(qcow2);
        using var reader = new Qcow2Reader(image);
        var rng = new Random(3);
        for (int i = 0; i < 300; i++)
        {
            long off = rng.NextInt64(expected.Length);
            int len = (int)Math.Min(expected.Length - off, rng.Next(1, 40_000));
            var buf = new byte[len];
            reader.Read(off, buf);
            Assert.True(buf.AsSpan().SequenceEqual(expected.AsSpan((int)off, len)), $"read {len} at {off}");
        }

        long next = 0;
        bool sawZero = false, sawData = false;
        foreach (var (offset, length, isZero) in reader.Extents())
        {
            Assert.Equal(next, offset);
            Assert.True(length > 0);
            if (isZero)
            {
                sawZero = true;
                Assert.True(expected.AsSpan((int)offset, (int)length).IndexOfAnyExcept((byte)0) < 0, $"zero extent at {offset} holds data");
            }
            else
            {
                sawData = true;
            }

            next = offset + length;
        }

        Assert.Equal(expected.Length, next);
        Assert.True(sawZero && sawData);
        Assert.Throws<OrasStagingException>(() => reader.Read(expected.Length - 10, new byte[11]));
    }

    [Fact]
    public void ZeroImagesReadAsZeros()
    {
        using var dir = new TempDir();
        string empty = dir.File("empty.qcow2");
        Qcow2Fixtures.Qemu("create", "-f", "qcow2", empty, "64M");
        string zeros = dir.File("zeros.raw");
        File.WriteAllBytes(zeros, new byte[3 << 20]);
        string converted = Qcow2Fixtures.Convert(dir, zeros, "zeros.qcow2");
        string zeroFlag = dir.File("zeroflag.qcow2");
        Qcow2Fixtures.Qemu("create", "-f", "qcow2", zeroFlag, "8M");
        var (code, output) = ImageTools.Run("qemu-io", "-c", "write -P 0x11 0 2M", "-c", "write -z 512k 1M", zeroFlag);
        Assert.True(code == 0, output);
        foreach (string image in new[] { empty, converted, zeroFlag })
        {
            Qcow2Fixtures.AssertSameBytes(Qcow2Fixtures.OracleRaw(dir, image), Qcow2Fixtures.OurRaw(image));
        }

        using var img = Qcow2Image.Open(empty);
        Assert.Equal(64L << 20, img.VirtualSize);
        Assert.Single(new Qcow2Reader(img).Extents());
    }

    [Fact]
    public void SubclustersAndSnapshotsFollowTheActiveLayer()
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, 4L << 20, seed: 11);
        string snap = Qcow2Fixtures.Convert(dir, raw, "snap.qcow2", "-o", "cluster_size=4096");
        Qcow2Fixtures.Qemu("snapshot", "-c", "before", snap);
        var (code, output) = ImageTools.Run("qemu-io", "-c", "write -P 0x77 100k 300k", "-c", "write -z 1M 64k", snap);
        Assert.True(code == 0, output);
        string ext = dir.File("ext.qcow2");
        Qcow2Fixtures.Qemu("create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=64k", ext, "4M");
        (code, output) = ImageTools.Run("qemu-io", "-c", "write -P 0x42 6k 2k", "-c", "write -P 0x43 200k 70k", "-c", "write -z 66k 2k", ext);
        Assert.True(code == 0, output);
        foreach (string image in new[] { snap, ext })
        {
            Qcow2Fixtures.AssertSameBytes(Qcow2Fixtures.OracleRaw(dir, image), Qcow2Fixtures.OurRaw(image));
        }

        using var s = Qcow2Image.Open(snap);
        Assert.Equal(1, s.Header.SnapshotCount);
    }

    [Fact]
    public void RefusesOverlaysAndExternalData()
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, 1L << 20, seed: 5);
        string baseImage = Qcow2Fixtures.Convert(dir, raw, "base.qcow2");
        string overlay = dir.File("overlay.qcow2");
        Qcow2Fixtures.Qemu("create", "-f", "qcow2", "-b", baseImage, "-F", "qcow2", overlay);
        string external = dir.File("external.qcow2");
        Qcow2Fixtures.Qemu("create", "-f", "qcow2", "-o", "data_file=" + dir.File("external.data"), external, "1M");
        foreach (var (image, reason) in new[] { (overlay, "backing file"), (external, "external data file") })
        {
            var ex = Assert.Throws<OrasStagingException>(() => Qcow2Image.Open(image));
            Assert.Equal(ErrorCode.UnsupportedFormat, ex.Code);
            Assert.Contains(reason, ex.Message);
        }
    }

    [Fact]
    public void CanStreamWhatQemuConvertWrites()
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, 4L << 20, seed: 9);
        // Not 'qemu-img convert -c': qemu packs compressed clusters into the free tail of earlier host clusters
        // while incompressible ones take fresh clusters, so host order does not follow guest order.
        foreach (string[] options in new[] { new[] { "-o", "cluster_size=4096" }, ["-o", "cluster_size=2M"] })
        {
            string converted = Qcow2Fixtures.Convert(dir, raw, "c.qcow2", options);
            using var image = Qcow2Image.Open(converted);
            Assert.True(image.CanStream(out string? why), string.Join(' ', options) + ": " + why);
        }

        // Rewriting early clusters after the fact puts their data after later clusters' data: not streamable.
        string rewritten = Qcow2Fixtures.Convert(dir, raw, "w.qcow2", "-o", "cluster_size=4096");
        var (code, output) = ImageTools.Run("qemu-io", "-c", "write -P 0x99 0 4k", rewritten);
        Assert.True(code == 0, output);
        Qcow2Fixtures.Qemu("snapshot", "-c", "s", rewritten);
        (code, output) = ImageTools.Run("qemu-io", "-c", "write -P 0x98 0 4k", rewritten);
        Assert.True(code == 0, output);
        using (var image = Qcow2Image.Open(rewritten))
        {
            Assert.False(image.CanStream(out string? why));
            Assert.Contains("before", why);
        }
    }
}

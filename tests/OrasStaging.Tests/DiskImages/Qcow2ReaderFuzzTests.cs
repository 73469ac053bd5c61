using System.Buffers.Binary;
using System.Diagnostics;
using OrasStaging.DiskImages.Qcow2;

namespace OrasStaging.Tests.DiskImages;

/// <summary>Malformed images: each must fail as CorruptInput (or UnsupportedFormat), quickly, without a large allocation.</summary>
public sealed class Qcow2ReaderFuzzTests : IDisposable
{
    private const int Cs = 4096;
    private readonly TempDir _dir = new();
    private readonly byte[] _good;
    private readonly long _l1At, _l2At;
    private readonly int _l2Entry;

    public Qcow2ReaderFuzzTests()
    {
        string raw = Qcow2Fixtures.Raw(_dir, 2L << 20, seed: 4);
        _good = File.ReadAllBytes(Qcow2Fixtures.Convert(_dir, raw, "good.qcow2", "-c", "-o", "cluster_size=4096"));
        _l1At = (long)U64(40);
        _l2At = (long)(U64(_l1At) & 0x00FFFFFFFFFFFE00);
        _l2Entry = Enumerable.Range(0, Cs / 8).First(i => U64(_l2At + (i * 8)) != 0);
    }

    public void Dispose() => _dir.Dispose();

    private ulong U64(long at) => BinaryPrimitives.ReadUInt64BigEndian(_good.AsSpan((int)at));

    private string Mutate(Action<byte[]> change, int? length = null)
    {
        var bytes = _good.AsSpan(0, length ?? _good.Length).ToArray();
        change(bytes);
        string path = _dir.File(Guid.NewGuid().ToString("N") + ".qcow2");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static void Put64(byte[] b, long at, ulong v) => BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan((int)at), v);

    private static void Put32(byte[] b, long at, uint v) => BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan((int)at), v);

    /// <summary>Opens and reads everything; returns the failure's code, or null when the image read cleanly.</summary>
    private static ErrorCode? Outcome(string path)
    {
        var sw = Stopwatch.StartNew();
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            using var image = Qcow2Image.Open(path);
            Assert.True(GC.GetAllocatedBytesForCurrentThread() - allocated < 16L << 20, "Open allocated more than 16 MiB");
            using var reader = new Qcow2Reader(image);
            reader.CopyTo(new MemoryTarget());
            return null;
        }
        catch (OrasStagingException ex)
        {
            return ex.Code;
        }
        finally
        {
            // A hang guard, not a speed check: the images are a few hundred KiB, so a reader that loops over a
            // header's huge table size instead of the file's bounds runs for minutes, far past this.
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), $"reading a small damaged image took {sw.Elapsed}: a loop bounded by a header field?");
        }
    }

    [Fact]
    public void TheUnmutatedFixtureReads() => Assert.Null(Outcome(Mutate(_ => { })));

    [Fact]
    public void TruncatedFilesAreCorrupt()
    {
        foreach (int length in new[] { 0, 10, 71, 103, Cs - 1, Cs + 100, (int)_l1At + 4, _good.Length / 2, _good.Length - Cs - 1 })
        {
            Assert.True(Outcome(Mutate(_ => { }, length)) == ErrorCode.CorruptInput, $"truncated to {length}");
        }
    }

    public static TheoryData<string> HeaderCases => new()
    {
        "l1-past-end", "l1-in-header", "l1-unaligned", "l1-huge", "reftable-past-end", "reftable-zero", "cluster-bits",
        "header-length", "extension-length", "size-beyond-l1", "size-odd", "l2-past-end", "l2-in-header",
        "data-past-end", "data-at-header", "compressed-at-header", "compressed-garbage", "l1-reserved", "snapshots-past-end",
    };

    [Theory]
    [MemberData(nameof(HeaderCases))]
    public void MalformedTablesAreCorrupt(string name)
    {
        long l2e = _l2At + (_l2Entry * 8);
        Action<byte[]> change = name switch
        {
            "l1-past-end" => b => Put64(b, 40, 1UL << 50),
            "l1-in-header" => b => Put64(b, 40, 0),
            "l1-unaligned" => b => Put64(b, 40, (ulong)_l1At + 8),
            "l1-huge" => b => Put32(b, 36, uint.MaxValue),
            "reftable-past-end" => b => Put64(b, 48, (ulong)_good.Length + Cs),
            "reftable-zero" => b => Put32(b, 56, 0),
            "cluster-bits" => b => Put32(b, 20, 30),
            "header-length" => b => Put32(b, 100, 5000),
            "extension-length" => b => { Put32(b, 112, 0x12345678); Put32(b, 116, 0x7FFFFFF0); },
            "size-beyond-l1" => b => Put64(b, 24, 1UL << 60),
            "size-odd" => b => Put64(b, 24, 1000),
            "l2-past-end" => b => Put64(b, _l1At, (1UL << 63) | (ulong)(uint)(_good.Length + (10 * Cs))),
            "l2-in-header" => b => Put64(b, _l1At, 1UL << 63),
            "data-past-end" => b => Put64(b, l2e, (1UL << 63) | (ulong)(uint)(_good.Length + (10 * Cs))),
            "data-at-header" => b => Put64(b, l2e, 1UL << 63),
            "compressed-at-header" => b => Put64(b, l2e, (1UL << 62) | 100),
            "compressed-garbage" => b => b.AsSpan((int)(_l2At + Cs), 3 * Cs).Fill(0xFF),
            "l1-reserved" => b => Put64(b, _l1At, U64(_l1At) | 0x100),
            "snapshots-past-end" => b => { Put32(b, 60, 3); Put64(b, 64, 1UL << 40); },
            _ => throw new ArgumentException(name),
        };
        Assert.Equal(ErrorCode.CorruptInput, Outcome(Mutate(change)));
    }

    [Theory]
    [InlineData(72, 1UL, "dirty")]
    [InlineData(72, 2UL, "corrupt")]
    [InlineData(72, 0x80UL, "unknown incompatible")]
    [InlineData(32, 1UL << 32, "encryption")]
    public void UnsupportedFeaturesAreRefused(int at, ulong value, string reason)
    {
        string path = Mutate(b => Put64(b, at, U64(at) | value));
        var ex = Assert.Throws<OrasStagingException>(() => Qcow2Image.Open(path));
        Assert.Equal(ErrorCode.UnsupportedFormat, ex.Code);
        Assert.Contains(reason, ex.Message);
    }

    [Fact]
    public void RandomMetadataDamageFailsCleanly()
    {
        var rng = new Random(12345);
        long[] regions = [0, _l1At, _l2At];
        int corrupt = 0;
        for (int i = 0; i < 150; i++)
        {
            string path = Mutate(b =>
            {
                for (int k = rng.Next(1, 4); k > 0; k--)
                {
                    long region = regions[rng.Next(regions.Length)];
                    int at = (int)region + (region == 0 ? rng.Next(0, 120) : rng.Next(0, 64));
                    b[at] ^= (byte)(1 << rng.Next(8));
                }
            });
            ErrorCode? outcome = Outcome(path); // anything but OrasStagingException fails the test
            corrupt += outcome is null ? 0 : 1;
            File.Delete(path);
        }

        Assert.True(corrupt > 30, $"only {corrupt} of 150 damaged images were refused");
    }
}

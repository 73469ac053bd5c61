using OrasStaging.Compression;

namespace OrasStaging.Tests.Compression;

/// <summary>Every fixture through every decoder this machine has, by each way the callers read.</summary>
public class DecoderTests
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (string name in DecoderFixtures.Names("gzip ").Concat(DecoderFixtures.Names("zstd ")))
        {
            foreach (string choice in new[] { "native", "managed" })
            {
                yield return new object[] { name, choice };
            }
        }
    }

    [Fact]
    public void TheNativeDecodersLoadOnThisMachine()
    {
        // CI installs libisal2 and libzstd1 (.ci/run); without them the native half of every case below would not run.
        Assert.True(Decoders.HasNative(CompressionKind.Gzip), Decoders.Describe(CompressionKind.Gzip));
        Assert.True(Decoders.HasNative(CompressionKind.Zstd), Decoders.Describe(CompressionKind.Zstd));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void CopyToGivesTheOriginalOrFails(string fixture, string choice) =>
        Check(fixture, choice, (decoder, output) => decoder.CopyTo(output, 1 << 20), trickle: int.MaxValue);

    [Theory]
    [MemberData(nameof(Cases))]
    public void SmallReadsOfATrickleGiveTheSame(string fixture, string choice)
    {
        var f = DecoderFixtures.Get(fixture);
        if (f.Compressed.Length > 8 << 20)
        {
            return; // the large fixture is for throughput; byte-at-a-time input would take minutes
        }

        Check(fixture, choice, (decoder, output) =>
        {
            var buffer = new byte[7];
            int n;
            while ((n = decoder.Read(buffer, 0, buffer.Length)) > 0)
            {
                output.Write(buffer, 0, n);
            }
        }, trickle: 3);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void LargeReadsGiveTheSame(string fixture, string choice) =>
        Check(fixture, choice, (decoder, output) =>
        {
            var buffer = new byte[100_003];
            int n;
            while ((n = decoder.Read(buffer.AsSpan())) > 0)
            {
                output.Write(buffer, 0, n);
            }
        }, trickle: 65_537);

    [Fact]
    public void TheSwitchChoosesTheDecoders()
    {
        // Describe and Open read the switch on each call; only this test sets it, and restores it. Other tests name
        // their decoder explicitly, so a parallel one is not affected.
        string? before = Environment.GetEnvironmentVariable(Decoders.Switch);
        try
        {
            Environment.SetEnvironmentVariable(Decoders.Switch, "managed");
            Assert.StartsWith("gzip: the runtime's GZipStream (ORASSTAGING_DECODER=managed)", Decoders.Describe(CompressionKind.Gzip));
            Assert.StartsWith("zstd: ZstdSharp (ORASSTAGING_DECODER=managed)", Decoders.Describe(CompressionKind.Zstd));
            Assert.IsType<ManagedGzipStream>(Decoders.Open(CompressionKind.Gzip, new MemoryStream()));
            Environment.SetEnvironmentVariable(Decoders.Switch, "native");
            Assert.StartsWith("gzip: ISA-L inflate", Decoders.Describe(CompressionKind.Gzip));
            Assert.IsType<IsalGzipStream>(Decoders.Open(CompressionKind.Gzip, new MemoryStream()));
            Environment.SetEnvironmentVariable(Decoders.Switch, null);
            // On .NET 9+ (these tests run on 10) GZipStream is zlib-ng and measured as fast as ISA-L; zstd goes native.
            Assert.StartsWith("gzip: the runtime's GZipStream (zlib-ng in .NET", Decoders.Describe(CompressionKind.Gzip));
            Assert.IsType<ManagedGzipStream>(Decoders.Open(CompressionKind.Gzip, new MemoryStream()));
            Assert.StartsWith("zstd: libzstd", Decoders.Describe(CompressionKind.Zstd));
            Assert.IsType<LibZstdStream>(Decoders.Open(CompressionKind.Zstd, new MemoryStream()));
        }
        finally
        {
            Environment.SetEnvironmentVariable(Decoders.Switch, before);
        }
    }

    private static void Check(string fixture, string decoder, Action<Stream, MemoryStream> drain, int trickle)
    {
        var f = DecoderFixtures.Get(fixture);
        var kind = fixture.StartsWith("gzip", StringComparison.Ordinal) ? CompressionKind.Gzip : CompressionKind.Zstd;
        var choice = decoder == "native" ? DecoderChoice.Native : DecoderChoice.Managed;
        var output = new MemoryStream();
        Exception? failure = null;
        try
        {
            using Stream stream = Decoders.Open(kind, new TrickleStream(f.Compressed, trickle), choice);
            drain(stream, output);
        }
        catch (Exception ex)
        {
            failure = ex;
        }

        if (f.Expected is null)
        {
            // A decoder's complaint (ZstdSharp reports a cut frame as EndOfStreamException); the callers turn any of
            // them into CorruptInput.
            Assert.True(failure is InvalidDataException or ZstdSharp.ZstdException or EndOfStreamException,
                $"{fixture} via {choice}: expected a decoder failure, got {failure?.GetType().Name ?? $"{output.Length} bytes"}");
        }
        else
        {
            Assert.True(failure is null, $"{fixture} via {choice}: {failure}");
            Assert.Equal(f.Expected.Length, output.Length);
            Assert.True(f.Expected.AsSpan().SequenceEqual(output.ToArray()), $"{fixture} via {choice}: the bytes differ");
        }
    }

    /// <summary>Gives at most a few bytes per read, so member and frame boundaries land everywhere.</summary>
    private sealed class TrickleStream : MemoryStream
    {
        private readonly int _most;

        public TrickleStream(byte[] data, int most) : base(data, writable: false) => _most = most;

        public override int Read(byte[] buffer, int offset, int count) => base.Read(buffer, offset, Math.Min(count, _most));

        public override int Read(Span<byte> buffer) => base.Read(buffer[..Math.Min(buffer.Length, _most)]);
    }
}

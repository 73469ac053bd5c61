using System.IO.Compression;
using OrasStaging.Compression;
using OrasStaging.DiskImages;
using OrasStaging.DiskImages.Qcow2;

namespace OrasStaging.Tests.DiskImages;

/// <summary>
/// Compressed clusters through each decoder (ISA-L / libzstd and the managed ones): the same bytes as qemu on both
/// paths, by random access and from a stream, and corrupt data a CorruptInput on both, never a fallback.
/// </summary>
public class Qcow2DecoderTests
{
    public static TheoryData<string, string[], string> Layouts()
    {
        var data = new TheoryData<string, string[], string>();
        foreach (string decoder in new[] { "native", "managed" })
        {
            data.Add("zlib", ["-c"], decoder);
            data.Add("zstd", ["-c", "-o", "compression_type=zstd"], decoder);
            data.Add("c512-zlib", ["-c", "-o", "cluster_size=512"], decoder);
            data.Add("c4k-zstd", ["-c", "-o", "cluster_size=4096,compression_type=zstd"], decoder);
            data.Add("c2m-zlib", ["-c", "-o", "cluster_size=2M"], decoder);
            data.Add("c2m-zstd", ["-c", "-o", "cluster_size=2M,compression_type=zstd"], decoder);
        }

        return data;
    }

    private static DecoderChoice Choice(string decoder) => decoder == "native" ? DecoderChoice.Native : DecoderChoice.Managed;

    [Theory]
    [MemberData(nameof(Layouts))]
    public void EachDecoderReadsLikeQemu(string name, string[] options, string decoder)
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, (9L << 20) + 1536, seed: name.Length + 70);
        string qcow2 = Qcow2Fixtures.Convert(dir, raw, name + ".qcow2", options);
        byte[] expected = File.ReadAllBytes(raw);

        using (var image = Qcow2Image.Open(qcow2))
        using (var reader = new Qcow2Reader(image, Choice(decoder)))
        using (var target = new MemoryTarget())
        {
            reader.CopyTo(target);
            Qcow2Fixtures.AssertSameBytes(expected, target.Bytes.ToArray());
        }

        byte[] file = File.ReadAllBytes(qcow2);
        using var streamed = new MemoryTarget();
        using (var decoderStream = new Qcow2StreamDecoder(Qcow2Input.CheckHead(file, null), streamed, dir.File("spool"), _ => { }, Choice(decoder)))
        {
            for (int at = 0; at < file.Length; at += 1 << 20)
            {
                int n = Math.Min(1 << 20, file.Length - at);
                decoderStream.Append(file[at..(at + n)], n);
            }

            decoderStream.End();
        }

        Qcow2Fixtures.AssertSameBytes(expected, streamed.Bytes.ToArray());
    }

    [Theory]
    [InlineData("native")]
    [InlineData("managed")]
    public void BothDecodersAgreeOnWhatIsCorrupt(string decoder)
    {
        const int cs = 4096;
        var choice = Choice(decoder);
        byte[] text = new byte[cs];
        new Random(5).NextBytes(text.AsSpan(0, cs / 2)); // half random, half zeros: compressible, not trivial

        byte[] deflate = Deflate(text);
        using (var zlib = new Qcow2Decompressor(Qcow2Compression.Zlib, choice))
        {
            Assert.Equal(decoder == "native", zlib.IsNative);
            var cluster = new byte[cs];
            byte[] padded = [.. deflate, .. new byte[512]]; // sector padding after the stream's end is allowed
            zlib.Decompress(padded, padded.Length, cluster);
            Assert.Equal(text, cluster);

            Assert.Equal(ErrorCode.CorruptInput, Code(() => zlib.Decompress(deflate, deflate.Length / 2, new byte[cs])));          // truncated
            Assert.Equal(ErrorCode.CorruptInput, Code(() => zlib.Decompress(Enumerable.Repeat((byte)0xFF, 600).ToArray(), 600, new byte[cs]))); // garbage
            Assert.Equal(ErrorCode.CorruptInput, Code(() => zlib.Decompress(Deflate(text[..1000]), Deflate(text[..1000]).Length, new byte[cs]))); // short

            // A failure leaves the reused state fit for the next cluster.
            Array.Clear(cluster);
            zlib.Decompress(deflate, deflate.Length, cluster);
            Assert.Equal(text, cluster);
        }

        using var compressor = new ZstdSharp.Compressor(3);
        byte[] first = compressor.Wrap(text.AsSpan(0, 1000)).ToArray();
        byte[] second = compressor.Wrap(text.AsSpan(1000)).ToArray();
        using var zstd = new Qcow2Decompressor(Qcow2Compression.Zstd, choice);
        Assert.Equal(decoder == "native", zstd.IsNative);
        byte[] twoFrames = [.. first, .. second, .. new byte[300]];
        var out2 = new byte[cs];
        zstd.Decompress(twoFrames, twoFrames.Length, out2);
        Assert.Equal(text, out2);

        byte[] whole = compressor.Wrap(text).ToArray();
        Assert.Equal(ErrorCode.CorruptInput, Code(() => zstd.Decompress(whole, whole.Length - 3, new byte[cs])));       // cut short
        Assert.Equal(ErrorCode.CorruptInput, Code(() => zstd.Decompress(whole, whole.Length, new byte[cs / 2])));       // more than a cluster
        Assert.Equal(ErrorCode.CorruptInput, Code(() => zstd.Decompress(first, first.Length, new byte[cs])));           // short of a cluster
        byte[] bad = (byte[])whole.Clone();
        bad[^5] ^= 0x5A;
        bad[10] ^= 0xA5;
        Assert.Equal(ErrorCode.CorruptInput, Code(() => zstd.Decompress(bad, bad.Length, new byte[cs])));               // damaged
        Array.Clear(out2);
        zstd.Decompress(whole, whole.Length, out2);
        Assert.Equal(text, out2);
    }

    private static ErrorCode? Code(Action action)
    {
        try
        {
            action();
            return null;
        }
        catch (OrasStagingException ex)
        {
            return ex.Code;
        }
    }

    private static byte[] Deflate(byte[] data)
    {
        var output = new MemoryStream();
        using (var d = new DeflateStream(output, CompressionLevel.Optimal, leaveOpen: true))
        {
            d.Write(data);
        }

        return output.ToArray();
    }
}

using System.Text;

namespace OrasStaging.DiskImages;

/// <summary>
/// The disk file of a KubeVirt containerDisk layer, read forward only out of the decoded tar stream: headers are
/// parsed as they pass (ustar, pax and GNU long names; sizes in octal or base-256), other members are skipped, and
/// the first regular file directly under <c>disk/</c> is handed on byte for byte. Nothing is written to disk
/// beside it: no temporary tar, no temporary image.
/// </summary>
internal sealed class TarMemberStream : ForwardReadStream
{
    public const string DiskFolder = "disk/";
    private const int Block = 512;

    private readonly Stream _tar;
    private long _remaining;

    private TarMemberStream(Stream tar, string path, long size)
    {
        _tar = tar;
        MemberPath = path;
        MemberSize = size;
        _remaining = size;
    }

    /// <summary>The member's path inside the tar, e.g. "disk/fedora.qcow2".</summary>
    public string MemberPath { get; }

    public long MemberSize { get; }

    /// <summary>
    /// The decoded stream itself when it is no tar; else the disk member of the tar. UnsupportedFormat when the tar
    /// holds no regular file under disk/ (whiteouts noted), CorruptInput when a header is damaged or the tar ends early.
    /// </summary>
    public static Stream Unwrap(Stream decoded, Action<string>? verbose = null)
    {
        var head = new byte[Block];
        int got = ReadFull(decoded, head);
        if (got < Block || !ImageFormatDetector.IsTar(head))
        {
            return new PrefixedStream(head.AsSpan(0, got).ToArray(), decoded);
        }

        var member = FindDisk(decoded, head);
        verbose?.Invoke($"The layer is a tar (a containerDisk); its disk is {member.MemberPath} ({Units.Bytes(member.MemberSize)}).");
        return member;
    }

    /// <summary>Walks the headers from <paramref name="first"/> (already read) to the disk member.</summary>
    private static TarMemberStream FindDisk(Stream tar, byte[] first)
    {
        var header = first;
        string? longName = null;
        string? paxPath = null;
        long? paxSize = null;
        var seen = new List<string>();
        var whiteouts = new List<string>();
        while (true)
        {
            if (header.AsSpan().IndexOfAnyExcept((byte)0) < 0)
            {
                // The end-of-archive marker: two zero blocks (one is enough to know).
                throw NoDisk(seen, whiteouts);
            }

            VerifyChecksum(header);
            char type = (char)header[156];
            long size = paxSize ?? ParseNumber(header.AsSpan(124, 12), "size");
            string path = Normalize(paxPath ?? longName ?? HeaderName(header));
            longName = null;
            paxPath = null;
            paxSize = null;
            switch (type)
            {
                case 'L':
                    longName = Encoding.UTF8.GetString(ReadData(tar, size)).TrimEnd('\0');
                    break;
                case 'x':
                    (paxPath, paxSize) = ParsePax(ReadData(tar, size));
                    break;
                case '0' or '\0' or '7' when IsDiskPath(path):
                    return new TarMemberStream(tar, path, size);
                case '1' or '2' when IsDiskPath(path):
                    throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                        $"The containerDisk's {path} is a {(type == '1' ? "hard" : "symbolic")} link, not a regular file.",
                        "Publish the disk as a regular file under disk/.");
                default:
                    if (path.Contains("/.wh.", StringComparison.Ordinal) || path.StartsWith(".wh.", StringComparison.Ordinal))
                    {
                        whiteouts.Add(path);
                    }
                    else if (seen.Count < 8)
                    {
                        seen.Add(path);
                    }

                    Skip(tar, type is '1' or '2' or '3' or '4' or '5' or '6' ? 0 : size);
                    break;
            }

            header = new byte[Block];
            if (ReadFull(tar, header) < Block)
            {
                throw new OrasStagingException(ErrorCode.CorruptInput, "The tar layer ends in the middle of a header.",
                    "Download it again; if it persists, the published layer is damaged.");
            }
        }
    }

    private static OrasStagingException NoDisk(List<string> seen, List<string> whiteouts) =>
        new(ErrorCode.UnsupportedFormat,
            $"The decoded layer is a tar archive with no regular file under {DiskFolder}, so it is not a containerDisk"
            + (whiteouts.Count > 0 ? $" (it deletes {string.Join(", ", whiteouts)})" : string.Empty)
            + (seen.Count > 0 ? $"; it holds {string.Join(", ", seen)}" : "; it is empty") + ". Nothing was written.",
            "Check the reference: a containerDisk image carries its disk as disk/<name>.qcow2 or .img in its top layer.");

    /// <summary>A regular file directly under disk/ that is not a whiteout.</summary>
    private static bool IsDiskPath(string path) =>
        path.StartsWith(DiskFolder, StringComparison.Ordinal) && path.Length > DiskFolder.Length
        && path.IndexOf('/', DiskFolder.Length) < 0 && !path[DiskFolder.Length..].StartsWith(".wh.", StringComparison.Ordinal);

    private static string Normalize(string path)
    {
        while (path.StartsWith("./", StringComparison.Ordinal))
        {
            path = path[2..];
        }

        return path.TrimStart('/');
    }

    private static string HeaderName(byte[] h)
    {
        string name = CString(h.AsSpan(0, 100));
        // ustar's prefix field (345..500); GNU tars use those bytes otherwise, and mark themselves "ustar  ".
        bool posix = h[262] == 0 && h[263] == (byte)'0';
        string prefix = posix ? CString(h.AsSpan(345, 155)) : string.Empty;
        return prefix.Length > 0 ? prefix + "/" + name : name;
    }

    private static string CString(ReadOnlySpan<byte> field)
    {
        int end = field.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? field : field[..end]);
    }

    /// <summary>Octal (space or NUL padded), or GNU base-256 when the high bit of the first byte is set.</summary>
    internal static long ParseNumber(ReadOnlySpan<byte> field, string what)
    {
        if ((field[0] & 0x80) != 0)
        {
            if ((field[0] & 0x40) != 0)
            {
                throw Corrupt($"a negative {what}");
            }

            long value = field[0] & 0x3F;
            for (int i = 1; i < field.Length; i++)
            {
                if (value > (long.MaxValue >> 8))
                {
                    throw Corrupt($"a {what} too large");
                }

                value = (value << 8) | field[i];
            }

            return value;
        }

        long octal = 0;
        bool any = false;
        foreach (byte b in field)
        {
            if (b is 0 or (byte)' ')
            {
                if (any)
                {
                    break;
                }

                continue;
            }

            if (b is < (byte)'0' or > (byte)'7' || octal > (long.MaxValue >> 3))
            {
                throw Corrupt($"an unreadable {what}");
            }

            octal = (octal << 3) | (long)(b - '0');
            any = true;
        }

        return octal;
    }

    private static void VerifyChecksum(byte[] h)
    {
        long stored = ParseNumber(h.AsSpan(148, 8), "checksum");
        long sum = 0;
        for (int i = 0; i < Block; i++)
        {
            sum += i is >= 148 and < 156 ? (byte)' ' : h[i];
        }

        if (sum != stored)
        {
            throw Corrupt("a header whose checksum does not match");
        }
    }

    /// <summary>Records "LEN key=value\n"; only path and size matter here.</summary>
    private static (string? Path, long? Size) ParsePax(byte[] data)
    {
        string? path = null;
        long? size = null;
        int pos = 0;
        while (pos < data.Length && data[pos] != 0)
        {
            int space = Array.IndexOf(data, (byte)' ', pos);
            if (space < 0 || !int.TryParse(Encoding.ASCII.GetString(data, pos, space - pos), out int length)
                || length <= space - pos || pos + length > data.Length)
            {
                throw Corrupt("a malformed pax header");
            }

            string record = Encoding.UTF8.GetString(data, space + 1, pos + length - space - 2);
            int eq = record.IndexOf('=');
            if (eq > 0)
            {
                string key = record[..eq];
                string value = record[(eq + 1)..];
                if (key == "path")
                {
                    path = value;
                }
                else if (key == "size")
                {
                    size = long.TryParse(value, out long s) && s >= 0 ? s : throw Corrupt("a malformed pax size");
                }
            }

            pos += length;
        }

        return (path, size);
    }

    private static byte[] ReadData(Stream tar, long size)
    {
        if (size > 1 << 20)
        {
            throw Corrupt("an extended header over 1 MiB");
        }

        var data = new byte[(int)size];
        if (ReadFull(tar, data) < data.Length)
        {
            throw Corrupt("an extended header cut short");
        }

        SkipBytes(tar, Padding(size));
        return data;
    }

    private static long Padding(long size) => (Block - (size % Block)) % Block;

    /// <summary>A member's data and its padding to the next 512-byte block.</summary>
    private static void Skip(Stream tar, long size) => SkipBytes(tar, size + Padding(size));

    private static void SkipBytes(Stream tar, long left)
    {
        var scratch = new byte[Math.Min(left, 1 << 16)];
        while (left > 0)
        {
            int n = tar.Read(scratch, 0, (int)Math.Min(left, scratch.Length));
            if (n == 0)
            {
                throw Corrupt("a member cut short");
            }

            left -= n;
        }
    }

    private static int ReadFull(Stream s, byte[] buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = s.Read(buffer, total, buffer.Length - total);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return total;
    }

    private static OrasStagingException Corrupt(string what) =>
        new(ErrorCode.CorruptInput, $"The tar layer has {what}.", "Download it again; if it persists, the published layer is damaged.");

    public override int Read(Span<byte> buffer)
    {
        if (_remaining == 0 || buffer.IsEmpty)
        {
            return 0;
        }

        int n = _tar.Read(buffer[..(int)Math.Min(buffer.Length, _remaining)]);
        if (n == 0)
        {
            throw new OrasStagingException(ErrorCode.CorruptInput,
                $"The tar layer ends {Units.Bytes(_remaining)} before the end of {MemberPath}.",
                "Download it again; if it persists, the published layer is damaged.");
        }

        _remaining -= n;
        return n;
    }

    public override long Position { get => MemberSize - _remaining; set => throw new NotSupportedException(); }
}

#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }

# Issue 9 ("Trust"): no stamp over unverified bytes, never hang, never loop. Through the real registry and the
# TestKit's fault proxy; every wait is bounded.

BeforeAll {
    $script:ModulePath = $env:ORASSTAGING_MODULE
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    Import-Module $ModulePath -Force

    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-trust-" + [guid]::NewGuid().ToString('n').Substring(0, 8))
    $null = New-Item -ItemType Directory -Force $Work

    # Incompressible, so the blob is larger than the client's buffers and a cut lands mid-stream.
    $script:Raw = (New-TestDiskImage -Path (Join-Path $Work 'source.img') -Size (4MB + 512) -Seed 21 -Shape Random).FullName
    $script:Registry = Start-TestRegistry -Auth anonymous
    $script:Plain = Publish-TestImage -Registry $Registry -Repository 'trust/plain' -Tag 'latest' -ImagePath $Raw -Compression none
    $script:Gzip = Publish-TestImage -Registry $Registry -Repository 'trust/gzip' -Tag 'latest' -ImagePath $Raw -Compression gzip
    $script:Layers = @{ plain = $Plain; gzip = $Gzip }
    $script:IsRoot = $IsLinux -and ((& id -u) -eq '0')

    function script:New-Target([string] $Name = 'disk.img') {
        $folder = Join-Path $Work ([guid]::NewGuid().ToString('n').Substring(0, 8))
        $null = New-Item -ItemType Directory -Force $folder
        Join-Path $folder $Name
    }
}

AfterAll {
    Stop-TestRegistry $Registry
    Remove-Item $Work -Recurse -Force -ErrorAction Ignore
    Remove-Module OrasStaging -ErrorAction Ignore
}

Describe 'Trust' {
    BeforeEach {
        Clear-ProxyFault -Registry $Registry
        Reset-ProxyStats -Registry $Registry
    }

    Context 'a restarted download never splices unverified bytes' {
        It 'a bad first body, cut, then a whole good body for the resume is DigestMismatch and stamps nothing (<Layer>, KeepBlob <Keep>)' -ForEach @(
            @{ Layer = 'plain'; Keep = $false }
            @{ Layer = 'gzip'; Keep = $false }
            @{ Layer = 'plain'; Keep = $true }
            @{ Layer = 'gzip'; Keep = $true }
        ) {
            $pub = $Layers[$Layer]
            # The first response has one byte flipped and is cut; the resume's Range is answered with 200.
            Set-ProxyFault -Registry $Registry -Kind Corrupt -Offset 1000 -AfterBytes 1500000 -Times 1 -PathContains $pub.digest | Out-Null
            Set-ProxyFault -Registry $Registry -Kind IgnoreRange -Times -1 -PathContains $pub.digest | Out-Null
            $target = New-Target
            $keep = Join-Path (Split-Path $target) 'blobs'
            $extra = @{}
            if ($Keep) { $extra.KeepBlob = $keep }
            $err = $null
            $result = Install-DiskImageFromOras "oras://$($Registry.proxy)/$($pub.repository):latest" -Path $target -RetryIntervalSec 0 `
                -ErrorVariable err -ErrorAction SilentlyContinue @extra
            $fired = (Get-ProxyStats -Registry $Registry).faultsFired.ignoreRange
            $fired | Should -BeGreaterThan 0 -Because 'the resume must have been answered with 200'
            $result | Should -BeNullOrEmpty
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DigestMismatch,*'
            Test-Path $target | Should -BeFalse
            Test-Path "$target.digest" | Should -BeFalse
            if ($Keep) {
                @(Get-ChildItem $keep -Recurse -File -ErrorAction Ignore | Where-Object Name -NotLike '*.partial').Count | Should -Be 0
            }

            # Once the server behaves, the same run stages the genuine image.
            Clear-ProxyFault -Registry $Registry
            $null = Install-DiskImageFromOras "oras://$($Registry.proxy)/$($pub.repository):latest" -Path $target -RetryIntervalSec 0 @extra
            & qemu-img compare -q -f raw -F raw $Raw $target
            $LASTEXITCODE | Should -Be 0
        }
    }

    Context 'never loop' {
        It 'a server that ignores Range behind a cutting proxy fails with a bounded number of requests' {
            Set-ProxyFault -Registry $Registry -Kind Cut -AfterBytes 1500000 -Times 1 -PathContains $Plain.digest | Out-Null
            Set-ProxyFault -Registry $Registry -Kind IgnoreRange -AfterBytes 1500000 -Times -1 -PathContains $Plain.digest | Out-Null
            $target = New-Target
            $ref = "oras://$($Registry.proxy)/$($Plain.repository):latest"
            $module = $ModulePath
            $job = Start-ThreadJob {
                Import-Module $using:module
                $err = $null
                $null = Install-DiskImageFromOras $using:ref -Path $using:target -RetryIntervalSec 0 -MaximumRetryCount 3 -ErrorVariable err -ErrorAction SilentlyContinue
                $err | ForEach-Object FullyQualifiedErrorId
            }
            try {
                $done = Wait-Job $job -Timeout 60
                $done | Should -Not -BeNullOrEmpty -Because 'the download must give up, not loop'
                $ids = @(Receive-Job $job)
                $ids.Count | Should -Be 1
                $ids[0] | Should -Match '^(RegistryProtocolError|RegistryUnavailable),'
            }
            finally {
                Stop-Job $job -ErrorAction Ignore
                Remove-Job $job -Force -ErrorAction Ignore
                Clear-ProxyFault -Registry $Registry
            }
            $blobRequests = @((Get-ProxyStats -Registry $Registry).requests | Where-Object path -Like "*$($Plain.digest)")
            $blobRequests.Count | Should -BeLessOrEqual 12
        }
    }
    Context 'never hang on the destination' {
        It 'a <Case> fails at once with <Code>, not after -TimeoutSec' -ForEach @(
            @{ Case = 'read-only mount'; Options = 'ro,size=1m'; Code = 'DestinationNotWritable'; Why = 'Read-only file system' }
            @{ Case = 'full volume'; Options = 'size=1m,nr_inodes=1'; Code = 'InsufficientSpace'; Why = 'full' }
        ) {
            if (-not $IsRoot) { Set-ItResult -Skipped -Because 'mounting a tmpfs needs root on Linux' }
            # As root, chmod does not stop writes: a read-only mount does (EROFS), and a tmpfs without a free inode is
            # full (ENOSPC). Neither is a lock held by anyone.
            $mount = Join-Path $Work ('mnt-' + [guid]::NewGuid().ToString('n').Substring(0, 8))
            $null = New-Item -ItemType Directory -Force $mount
            & mount -t tmpfs -o $Options tmpfs $mount
            $LASTEXITCODE | Should -Be 0
            $ref = "oras://$($Registry.proxy)/$($Plain.repository):latest"
            $module = $ModulePath
            $job = Start-ThreadJob {
                Import-Module $using:module
                $err = $null
                $null = Install-DiskImageFromOras $using:ref -Path (Join-Path $using:mount 'disk.img') -TimeoutSec 3600 -RetryIntervalSec 0 `
                    -ErrorVariable err -ErrorAction SilentlyContinue
                $err | ForEach-Object { $_.FullyQualifiedErrorId + ' ' + $_.Exception.Message }
            }
            try {
                $done = Wait-Job $job -Timeout 90
                $done | Should -Not -BeNullOrEmpty -Because 'there is no lock to wait for'
                $lines = @(Receive-Job $job)
                $lines.Count | Should -Be 1
                $lines[0] | Should -BeLike "$Code,*"
                $lines[0] | Should -Match $Why
            }
            finally {
                Stop-Job $job -ErrorAction Ignore
                Remove-Job $job -Force -ErrorAction Ignore
                & umount $mount
            }
        }
    }

    Context 'small bodies are retried like blob bodies' {
        It 'a manifest body cut mid-way is retried and the resolve succeeds' {
            Set-ProxyFault -Registry $Registry -Kind Cut -AfterBytes 100 -Target Manifest -Times 1 -PathContains $Plain.repository | Out-Null
            $image = Resolve-OrasImage "oras://$($Registry.proxy)/$($Plain.repository):latest" -RetryIntervalSec 0
            $image.Digest | Should -Be $Plain.digest
            (Get-ProxyStats -Registry $Registry).faultsFired.cut | Should -Be 1
        }

        It 'a manifest body that is always cut ends as RegistryUnavailable, not UnexpectedError' {
            Set-ProxyFault -Registry $Registry -Kind Cut -AfterBytes 100 -Target Manifest -Times -1 -PathContains $Plain.repository | Out-Null
            $err = $null
            $image = Resolve-OrasImage "oras://$($Registry.proxy)/$($Plain.repository):latest" -RetryIntervalSec 0 -MaximumRetryCount 2 `
                -ErrorVariable err -ErrorAction SilentlyContinue
            $image | Should -BeNullOrEmpty
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'RegistryUnavailable,*'
            $err[0].Exception.Message | Should -Match 'manifest latest'
            (Get-ProxyStats -Registry $Registry).faultsFired.cut | Should -Be 3 -Because 'one try and two retries'
        }
    }

    Context 'a host that does not resolve' {
        It 'fails at once, naming the host, without retries' {
            $name = 'no-such-host.invalid'
            $kind = try { $null = [Net.Dns]::GetHostAddresses($name); 'resolves' } catch { "$($_.Exception.InnerException.SocketErrorCode)" }
            if ($kind -ne 'HostNotFound') { Set-ItResult -Skipped -Because "the resolver here answers '$kind' for $name, not a definite no such host" }
            $err = $null
            $verbose = Resolve-OrasImage "oras://$name/lab/x:y" -RetryIntervalSec 0 -MaximumRetryCount 3 -Verbose `
                -ErrorVariable err -ErrorAction SilentlyContinue 4>&1
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'RegistryUnavailable,*'
            $err[0].Exception.Message | Should -Match ([regex]::Escape("'$name' does not resolve"))
            @($verbose | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] -and $_.Message -match 'retry' }).Count |
                Should -Be 0 -Because 'a definite "no such host" is not transient'
        }
    }

    Context 'a skip makes no blob request' {
        It 'a tag run whose layer digest equals the stamp asks for manifests only' {
            $target = New-Target
            $ref = "oras://$($Registry.proxy)/$($Gzip.repository):latest"
            $null = Install-DiskImageFromOras $ref -Path $target -RetryIntervalSec 0
            Reset-ProxyStats -Registry $Registry
            $result = Install-DiskImageFromOras $ref -Path $target -RetryIntervalSec 0
            $result.Skipped | Should -BeTrue
            $stats = Get-ProxyStats -Registry $Registry
            $stats.requestsByKind.manifest | Should -BeGreaterThan 0
            $stats.requestsByKind.blob | Should -Be 0 -Because 'the .sha256 sidecar is cross-checked only when bytes will be pulled'
        }

        It 'a run that pulls still cross-checks the sidecar' {
            $target = New-Target
            $verbose = Install-DiskImageFromOras "oras://$($Registry.proxy)/$($Gzip.repository):latest" -Path $target -RetryIntervalSec 0 -Verbose 4>&1 |
                Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }
            ($verbose.Message -join "`n") | Should -Match 'sidecar .* agrees'
        }
    }

    Context 'a declared size bounds the decoded bytes' {
        It 'a blob that inflates past the size its layer declares fails with CorruptInput and stages nothing' {
            $zeros = Join-Path $Work 'zeros.img'
            $f = [IO.File]::Create($zeros); $f.SetLength(64MB); $f.Dispose()
            $lying = Publish-TestImage -Registry $Registry -Repository 'trust/declared' -Tag 'latest' -ImagePath $zeros -Compression gzip -DeclaredSize 1MB
            Remove-Item $zeros
            $target = New-Target
            $err = $null
            $result = Install-DiskImageFromOras "oras://$($Registry.proxy)/$($lying.repository):latest" -Path $target -Format Raw -RetryIntervalSec 0 `
                -ErrorVariable err -ErrorAction SilentlyContinue
            $result | Should -BeNullOrEmpty
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'CorruptInput,*'
            $err[0].Exception.Message | Should -Match 'declares'
            Test-Path $target | Should -BeFalse
            Test-Path "$target.digest" | Should -BeFalse
        }
    }

    Context '-GrowBy and -Size are checked up front' {
        It '-<Name> <Value> is InvalidArgument before any registry request' -ForEach @(
            @{ Name = 'GrowBy'; Value = [long]::MaxValue }
            @{ Name = 'Size'; Value = [long]::MaxValue - 100 }
        ) {
            $extra = @{ $Name = $Value }
            $err = $null
            $null = Install-DiskImageFromOras "oras://$($Registry.proxy)/$($Plain.repository):latest" -Path (New-Target 'disk.qcow2') `
                -ErrorVariable err -ErrorAction SilentlyContinue @extra
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
            (Get-ProxyStats -Registry $Registry).totalRequests | Should -Be 0
        }
    }

    Context 'TLS on loopback' {
        BeforeAll {
            $script:Tls = Start-TestRegistry -Auth anonymous -Tls
            $script:TlsPub = Publish-TestImage -Registry $Tls -Repository 'trust/tls' -Tag 'latest' -ImagePath $Raw -Compression gzip
            $script:TlsRef = "oras://$($Tls.proxy)/trust/tls:latest"
            $script:Probe = "Import-Module '$ModulePath'; try { 'OK ' + (Resolve-OrasImage '$TlsRef' -RetryIntervalSec 0 -ErrorAction Stop).Digest } " +
                "catch { 'ERR ' + `$_.FullyQualifiedErrorId + ' ' + `$_.Exception.Message }"
        }
        AfterAll { Stop-TestRegistry $Tls }

        It 'without -PlainHttp a loopback TLS registry is spoken to in TLS (its CA in SSL_CERT_FILE)' {
            $run = Invoke-ChildPwsh -Command $Probe -Environment @{ SSL_CERT_FILE = $Tls.caCertPath }
            $run.Out.Trim() | Should -Be "OK $($TlsPub.digest)"
        }

        It 'an untrusted certificate is a certificate error that says so, not a fallback to http' {
            $run = Invoke-ChildPwsh -Command $Probe -Unset 'SSL_CERT_FILE', 'SSL_CERT_DIR'
            $run.Out.Trim() | Should -BeLike 'ERR RegistryUnavailable,*'
            $run.Out | Should -Match 'TLS certificate of 127\.0\.0\.1 was refused'
        }

        It 'a plain-http loopback registry still works without -PlainHttp (the fallback)' {
            (Resolve-OrasImage "oras://$($Registry.proxy)/$($Plain.repository):latest" -RetryIntervalSec 0).Digest | Should -Be $Plain.digest
        }
    }
}

fastboot %* getvar product 2>&1 | findstr /r /c:"^product: *piano" || echo Mismatching image and device
fastboot %* getvar product 2>&1 | findstr /r /c:"^product: *piano" || exit /B 1
::check anti_version
if exist "%~dp0images\anti_version.txt" (for /f "usebackq" %%a in ("%~dp0images\anti_version.txt") do (set CURRENT_ANTI_VER=%%a))
if [%CURRENT_ANTI_VER%] EQU [] set CURRENT_ANTI_VER=0
for /f "tokens=2 delims=: " %%i in ('fastboot %* getvar anti 2^>^&1 ^| findstr /r /c:"anti:"') do (set version=%%i)
if [%version%] EQU [] set version=0
set anticheck="antirollback check pass"
if %version% GTR %CURRENT_ANTI_VER% set anticheck="Device anti version is newer than this package"
echo %anticheck% | findstr /r /c:"pass" || @echo "Antirollback check error" && exit /B 1
fastboot %* getvar crc 2>&1 | findstr /r /c:"^crc: 1" && if %errorlevel% equ 0 (
fastboot %* flash crclist %~dp0images\crclist.txt || @echo "Flash crclist error" && exit /B 1
fastboot %* flash sparsecrclist %~dp0images\sparsecrclist.txt || @echo "Flash sparsecrclist error" && exit /B 1
)
fastboot %* erase boot_ab || @echo "Erase boot error" && exit /B 1
fastboot %* flash abl_ab %~dp0images/abl.elf || @echo "Flash abl error" && exit /B 1
fastboot %* flash vbmeta_ab %~dp0images/vbmeta.img || @echo "Flash vbmeta error" && exit /B 1
fastboot %* flash super %~dp0images/super.img || @echo "Flash super error" && exit /B 1
::fastboot %* flash cust %~dp0images/cust.img
fastboot %* flash boot_ab %~dp0images/boot.img || @echo "Flash boot error" && exit /B 1
fastboot %* set_active a || @echo "Set active a error" && exit /B 1
fastboot %* reboot || @echo "Reboot error" && exit /B 1
